#!/usr/bin/env bash
# E18 unseen: the scanner on clean titles it never trained on — ml-1m's titles that ml-100k lacks — with and
# without the hard-negative passes over the reference titles: false-positive rate at the calibrated threshold
# and title-level recall of each held-out trigger on 200 of them. Logs: experiments/logs/e18_unseen_mine<N>.json
set -euo pipefail
cd "$(dirname "$0")/.." && source experiments/common.sh
use_home sc-exp
for passes in "$@"; do
  echo "$(date -u +%FT%TZ) python bench/scanner_eval.py --mine-passes $passes --unseen ml-1m --positions suffix" \
    > "experiments/logs/e18_unseen_mine$passes.cmd"
  python bench/scanner_eval.py --mine-passes "$passes" --unseen ml-1m --positions suffix \
    --out "experiments/logs/e18_unseen_mine$passes.json" 2> "experiments/logs/e18_unseen_mine$passes.log"
done
