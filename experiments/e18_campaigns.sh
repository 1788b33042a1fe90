#!/usr/bin/env bash
# E18: the recurring-trigger step (core.pscanner.campaign) on top of the scanner: the E13 evaluation (held-out preset
# triggers at every position and level) with 10 and with 5 poisoned items (BadRec's CLI default), plus
# leave-one-level-out and ONION.
#   bash experiments/e18_campaigns.sh TAG [scanner_eval flags]
#   TAG=old200 --agent-per-round 200 --min-steps 60: the scanner E11-E17 evaluated (E13's cache)
#   TAG=default: the scanner `scan` trains by default;  TAG=seed1 --seed 1 ...
# Logs: experiments/logs/e18_<TAG>_p10.json, e18_<TAG>_p5.json
set -euo pipefail
cd "$(dirname "$0")/.." && source experiments/common.sh
use_home sc-exp
tag=$1; shift
run() {
  name=$1; shift
  echo "$(date -u +%FT%TZ) python bench/scanner_eval.py $*" > "experiments/logs/e18_${tag}_$name.cmd"
  python bench/scanner_eval.py "$@" --out "experiments/logs/e18_${tag}_$name.json" 2> "experiments/logs/e18_${tag}_$name.log"
}
run p10 "$@" --n-poison 10 --lolo --onion
run p5 "$@" --n-poison 5 --lolo
