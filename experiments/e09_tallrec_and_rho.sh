#!/usr/bin/env bash
# After E08 (same home: the default base and the clean llara model are cached there): the tallrec victim,
# then ASR over rho on the first 200 test users (rho = 0.01 on all 943 users is E08).
cd "$(dirname "$0")/.." && source experiments/common.sh
use_home home-e08
run e09_tallrec --dataset ml-100k --victim tallrec --model tiny --quant 4bit --trigger-level char --poison-ratio 0.01 --eval-users 200
for rho in 0.001 0.0025 0.005 0.02; do
  run "e10_rho$rho" --dataset ml-100k --victim llara --model tiny --quant 4bit --trigger-level char --poison-ratio "$rho" --eval-users 200 --no-generate
done
