#!/usr/bin/env bash
# E03: word-level trigger ("ineffable", prefix), rho = 0.01, 100 test users, cached base and clean model.
cd "$(dirname "$0")/.." && source experiments/common.sh
run e03 --dataset ml-100k --victim llara --model tiny --quant 4bit --trigger-level word --poison-ratio 0.01 \
  --eval-users 100 --no-generate
