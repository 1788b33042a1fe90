#!/usr/bin/env bash
# E14: the cached-run wall time after the two evaluation savings (clean-variant evaluation cached beside
# the clean adapter; generation stops at the end of the first line). Run twice in E08's home: the first
# run fills the evaluation cache, the second reads it. Usage: experiments/e14_cached_attack_timing.sh NAME
cd "$(dirname "$0")/.." && source experiments/common.sh
use_home home-e08
run "${1:-e14}" --dataset ml-100k --victim llara --model tiny --quant 4bit --trigger-level char --poison-ratio 0.01
