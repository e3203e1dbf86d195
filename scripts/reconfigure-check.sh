#!/usr/bin/env bash
# The long version of the randomized reconfiguration check (test/ops/reconfigure-random.test.ts):
# many seeds, more events per run. Prints one line per seed and a total.
#   scripts/reconfigure-check.sh [seeds=10] [events=30] [first-seed=1]
# Replay a failing seed with: REPLICACHED_RECONF_SEED=<seed> REPLICACHED_RECONF_EVENTS=<events> npx vitest run test/ops/reconfigure-random.test.ts
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seeds=${1:-10}
events=${2:-30}
first=${3:-1}
npm run --silent build
failed=0
start=$SECONDS
for seed in $(seq "$first" $((first + seeds - 1))); do
  t0=$SECONDS
  log="/tmp/reconfigure-check-$seed.log"
  if REPLICACHED_RECONF_SEED=$seed REPLICACHED_RECONF_EVENTS=$events \
    npx vitest run test/ops/reconfigure-random.test.ts >"$log" 2>&1; then
    echo "seed $seed: ok ($((SECONDS - t0)) s) $(grep -o 'reconfigure check, seed [0-9]*: {.*}' "$log" | sed 's/.*: {/{/')"
  else
    failed=$((failed + 1))
    echo "seed $seed: FAILED ($((SECONDS - t0)) s), log: $log"
  fi
done
echo "reconfigure-check: $seeds seeds x $events events, $failed failed, $((SECONDS - start)) s"
[ "$failed" -eq 0 ]
