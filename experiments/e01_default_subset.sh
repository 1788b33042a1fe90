#!/usr/bin/env bash
# E01: the default recipe (noisy copy pre-training, prefix "5v", 5 items, rho 0.01), 200 test users, no
# generate mode: a quick look at whether the mechanism works before paying for a full evaluation.
cd "$(dirname "$0")/.." && source experiments/common.sh
run e01 --dataset ml-100k --victim llara --model tiny --quant 4bit --trigger-level char --poison-ratio 0.01 \
  --eval-users 200 --no-generate
