#!/usr/bin/env bash
# The long version of the randomized replication check (test/replication/model-check.test.ts):
# many seeds, more batches and more backend kills per run. Prints one line per seed and a total.
#   scripts/model-check.sh [seeds=20] [batches=200] [faults=4]
# Replay a failing seed with: REPLICACHED_CHECK_SEED=<seed> npx vitest run test/replication/model-check.test.ts
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seeds=${1:-20}
batches=${2:-200}
faults=${3:-4}
npm run --silent build
failed=0
start=$SECONDS
for seed in $(seq 1 "$seeds"); do
  t0=$SECONDS
  if REPLICACHED_CHECK_SEED=$seed REPLICACHED_CHECK_BATCHES=$batches REPLICACHED_CHECK_FAULTS=$faults \
    npx vitest run test/replication/model-check.test.ts >"/tmp/model-check-$seed.log" 2>&1; then
    echo "seed $seed: ok ($((SECONDS - t0)) s) $(grep -o 'model check, [a-z ]*: {[^}]*}' "/tmp/model-check-$seed.log" | tr '\n' ' ')"
  else
    failed=$((failed + 1))
    echo "seed $seed: FAILED ($((SECONDS - t0)) s), log: /tmp/model-check-$seed.log"
  fi
done
echo "model-check: $seeds seeds x (2 runs of 4 workers x $batches batches x 20 ops, $faults kills), $failed failed, $((SECONDS - start)) s"
[ "$failed" -eq 0 ]
