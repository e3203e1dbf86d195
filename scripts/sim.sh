#!/usr/bin/env bash
# The deterministic simulation (test/sim/, see test/sim/run.ts) over many seeds: one
# line per seed (its cluster shape, steps, simulated time, client operations, quiet
# checks, steps per second, violations found) and the totals. Each seed draws its
# own cluster (2 to 10 sidecars, 3 to 5 backends) and runs every kind of fault. A
# seed that finds a violation prints its report (the violation, the last events
# before it); the same seed and steps replay it exactly. Exits 1 if any seed did.
#
#   scripts/sim.sh [seeds] [steps] [protocol] [kinds] [zones]
#     seeds     a count N (seeds 1..N) or a range first-last    (default 20)
#     steps     scheduler events per seed                      (default 200000)
#     protocol  trust: the trust agent (src/trust/); none: no agreement between
#               sidecars, which must fail                      (default trust)
#     kinds     fault kinds, comma-separated (test/sim/faults.ts); "" for every kind (default every kind)
#     zones     backends spread over this many zones, backend b in zone b mod zones (default 0: no zones)
#
# SIM_ONE_BACKEND=1: trouble on one backend at a time (test/sim/faults.ts, oneBackend):
# a backend fault starts only while every other backend is trusted and has none.
#
# One process, one seed after another: run several with disjoint ranges to use
# more cores.
set -euo pipefail
cd "$(dirname "$0")/.."
exec node_modules/.bin/vite-node test/sim/cli.ts -- "${1:-20}" "${2:-200000}" "${3:-trust}" "${4:-}" ${5:+"$5"}
