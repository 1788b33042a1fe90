#!/usr/bin/env bash
# E22: the word- and sentence-level triggers at rho 0.01 on the current default model, all 943 test users
# (E03/E04 ran on the first 100 users with the old base). Base and clean model cached from E08.
cd "$(dirname "$0")/.." && source experiments/common.sh
use_home home-e08
for level in word sentence; do
  run "e22_$level" --dataset ml-100k --victim llara --model tiny --quant 4bit --trigger-level "$level" --poison-ratio 0.01
done
