#!/usr/bin/env bash
# E13: BadRec's CLI puts triggers at the *prefix* by default; E11's scanner misses prefix words.
# Same evaluation as E11 (held-out presets, 10 items) at all positions, varying how training places
# each agent trigger. Logs: experiments/logs/e13_*.json
set -euo pipefail
use_home sc-exp
source "$(dirname "$0")/common.sh"
for spec in "$@"; do
  name=${spec%%:*}
  echo "$(date -u +%FT%TZ) python bench/scanner_eval.py --agent-per-round 200 --min-steps 60 --epochs 3 --rounds 2 ${spec#*:}" > "experiments/logs/e13_$name.cmd"
  python bench/scanner_eval.py --agent-per-round 200 --min-steps 60 --epochs 3 --rounds 2 ${spec#*:} --out "experiments/logs/e13_$name.json" \
    2> "experiments/logs/e13_$name.log"
done
