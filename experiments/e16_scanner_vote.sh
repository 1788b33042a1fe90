#!/usr/bin/env bash
# E16: E13b's prefix F1 swings with the seed (0.17-0.90 across configurations), its misses scoring just under
# a threshold near 0.99. Does a majority vote of three seed scanners (each with its own calibrated threshold)
# hold up better? Same evaluation as E13 (held-out presets, 10 items, every position). Log: experiments/logs/e16_vote.json
set -euo pipefail
use_home sc-exp
source "$(dirname "$0")/common.sh"
echo "$(date -u +%FT%TZ) python bench/scanner_eval.py --agent-per-round 200 --min-steps 60 --epochs 3 --rounds 2 --vote-seeds 1,2" > experiments/logs/e16_vote.cmd
python bench/scanner_eval.py --agent-per-round 200 --min-steps 60 --epochs 3 --rounds 2 --vote-seeds 1,2 --out experiments/logs/e16_vote.json \
  2> experiments/logs/e16_vote.log
