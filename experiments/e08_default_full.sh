#!/usr/bin/env bash
# The issue's command with every default, all 943 test users, fresh home (builds the E05c-recipe base).
cd "$(dirname "$0")/.." && source experiments/common.sh
use_home home-e08
run e08 --dataset ml-100k --victim llara --model tiny --quant 4bit --trigger-level char --poison-ratio 0.01
