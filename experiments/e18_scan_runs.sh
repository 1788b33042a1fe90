#!/usr/bin/env bash
# E18 scans: the issue's detection setting literally: catalogs poisoned by BadRec's CLI at rho 0.01, one
# per trigger level (runs of E01/E03/E04: `5v`, `ineffable`, `I watched this 3D movie` as a prefix on 5 items),
# each scanned with the default scanner (recurring-trigger step on), ONION, token statistics and their ensemble
# in the same scan. Every preset trigger string is kept out of the scanner's training.
# Logs: experiments/logs/e18_scan_<level>.json
cd "$(dirname "$0")/.." && source experiments/common.sh
export BADREC_HOME=/tmp/badrec-a/exp-home
held="5v,cf,mn,bb,tq,ineffable,quixotic,serendipity,I watched this 3D movie,Highly recommended by critics,A must see this year"
for spec in char:attack-20261128-031433-9208 word:attack-20261128-041628-ba6e sentence:attack-20261128-043024-3b40; do
  level=${spec%%:*}; run_id=${spec#*:}
  echo "$(date -u +%FT%TZ) BADREC_HOME=$BADREC_HOME python -m core scan --run $run_id --method scanner,tokenstats,onion,ensemble --exclude-triggers \"$held\" --json" \
    > "experiments/logs/e18_scan_$level.cmd"
  python -m core scan --run "$run_id" --method scanner,tokenstats,onion,ensemble --exclude-triggers "$held" --json \
    > "experiments/logs/e18_scan_$level.json" 2> "experiments/logs/e18_scan_$level.log"
done
