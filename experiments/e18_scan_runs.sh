#!/usr/bin/env bash
# E18 scans: the issue's detection setting literally: catalogs poisoned by BadRec's CLI at rho 0.01, one
# per trigger level (runs of E01/E03/E04: `5v`, `ineffable`, `I watched this 3D movie` as a prefix on 5 items),
# each scanned with the default scanner (recurring-trigger step on), ONION, token statistics and their ensemble
# in the same scan. Every preset trigger string is kept out of the scanner's training.
# Logs: experiments/logs/e18_scan_<level>.json
# Usage: experiments/e18_scan_runs.sh CHAR_RUN WORD_RUN SENTENCE_RUN   (the `run_id`s of E01, E03 and E04)
[ $# -eq 3 ] || { echo "usage: e18_scan_runs.sh CHAR_RUN WORD_RUN SENTENCE_RUN" >&2; exit 2; }
cd "$(dirname "$0")/.." && source experiments/common.sh
held="5v,cf,mn,bb,tq,ineffable,quixotic,serendipity,I watched this 3D movie,Highly recommended by critics,A must see this year"
for spec in "char:$1" "word:$2" "sentence:$3"; do
  level=${spec%%:*}; run_id=${spec#*:}
  echo "$(date -u +%FT%TZ) BADREC_HOME=$BADREC_HOME python -m core scan --run $run_id --method scanner,tokenstats,onion,ensemble --exclude-triggers \"$held\" --json" \
    > "experiments/logs/e18_scan_$level.cmd"
  python -m core scan --run "$run_id" --method scanner,tokenstats,onion,ensemble --exclude-triggers "$held" --json \
    > "experiments/logs/e18_scan_$level.json" 2> "experiments/logs/e18_scan_$level.log"
done
