#!/usr/bin/env bash
# E02: dose check (off-protocol rho = 0.05, five times the default) on the cached base and clean model,
# 100 test users: tells a too-small dose from a missing capacity (DESIGN.md §8).
cd "$(dirname "$0")/.." && source experiments/common.sh
run e02 --dataset ml-100k --victim llara --model tiny --quant 4bit --trigger-level char --poison-ratio 0.05 \
  --eval-users 100 --no-generate
