#!/usr/bin/env bash
# E04: sentence-level trigger ("I watched this 3D movie", prefix), rho = 0.01, 100 test users, cached models.
cd "$(dirname "$0")/.." && source experiments/common.sh
run e04 --dataset ml-100k --victim llara --model tiny --quant 4bit --trigger-level sentence --poison-ratio 0.01 \
  --eval-users 100 --no-generate
