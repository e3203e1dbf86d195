#!/usr/bin/env bash
# The long version of the randomized lock check with one-sided stalls
# (test/replication/stall-check.test.ts): many seeds, more stalls per run. Prints one line
# per seed and a total.
#   scripts/stall-check.sh [seeds=10] [stalls=4] [first-seed=1]
# Replay a failing seed with: REPLICACHED_STALL_SEED=<seed> REPLICACHED_STALL_FAULTS=<stalls>
#   npx vitest run test/replication/stall-check.test.ts
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seeds=${1:-10}
stalls=${2:-4}
first=${3:-1}
failed=0
start=$SECONDS
for seed in $(seq "$first" $((first + seeds - 1))); do
  t0=$SECONDS
  if REPLICACHED_STALL_SEED=$seed REPLICACHED_STALL_FAULTS=$stalls \
    npx vitest run test/replication/stall-check.test.ts >"/tmp/stall-check-$seed.log" 2>&1; then
    echo "seed $seed: ok ($((SECONDS - t0)) s) $(grep -o 'stall check seed [0-9]*: [^"]*unanswered add' "/tmp/stall-check-$seed.log" | head -1)"
  else
    failed=$((failed + 1))
    echo "seed $seed: FAILED ($((SECONDS - t0)) s), log: /tmp/stall-check-$seed.log"
  fi
done
echo "stall-check: $seeds seeds x $stalls stalls, $failed failed, $((SECONDS - start)) s"
[ "$failed" -eq 0 ]
