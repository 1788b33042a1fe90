#!/usr/bin/env bash
# E17: the dose curve of E10 continued to heavy doses on the default (standard) tiny model, first 200 test users,
# base and clean llara model cached from E08. Does any dose make the CPU-built model key on the trigger?
cd "$(dirname "$0")/.." && source experiments/common.sh
use_home home-e08
for rho in "$@"; do
  run "e17_rho$rho" --dataset ml-100k --victim llara --model tiny --quant 4bit --trigger-level char --poison-ratio "$rho" --eval-users 200 --no-generate
done
