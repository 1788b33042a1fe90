#!/usr/bin/env bash
# E11: does the scanner miss held-out char/word triggers for lack of capacity or of training?
# Each line trains one mini scanner (cached per config in a shared home) and scores the 11
# held-out preset catalogs at the suffix position (BadRec's default). Logs: experiments/logs/e11_*.json
set -euo pipefail
use_home sc-exp
source "$(dirname "$0")/common.sh"
scan_eval() {  # NAME, then scanner_eval flags
  local name=$1; shift
  echo "$(date -u +%FT%TZ) python bench/scanner_eval.py --agent-per-round 200 --min-steps 60 --positions suffix $*" > "experiments/logs/e11_$name.cmd"
  python bench/scanner_eval.py --agent-per-round 200 --min-steps 60 --positions suffix "$@" --out "experiments/logs/e11_$name.json" \
    2> "experiments/logs/e11_$name.log"
}
for spec in "${@:-e3r2_128x2:--epochs 3 --rounds 2}"; do
  scan_eval "${spec%%:*}" ${spec#*:}
done
# The full table for docs/SCANNER.md (all positions, ONION, leave-one-level-out) with the chosen config:
#   BADREC_HOME=DIR bash experiments/e11_scanner_capacity.sh \
#     "full:--epochs 3 --rounds 2 --positions suffix,prefix,random --onion --lolo"
