#!/usr/bin/env bash
# E20: the issue's command in a fresh home (base pre-training, clean and poisoned fine-tuning, evaluation of
# all 943 test users) after the evaluation savings of core/lm/lmscore.py; then the same command again (cached).
# Usage: [BADREC_HOME=FRESH_HOME] experiments/e20_first_run.sh
cd "$(dirname "$0")/.." && source experiments/common.sh
use_home home-e20
run e20_first_run --dataset ml-100k --victim llara --model tiny --quant 4bit --trigger-level char --poison-ratio 0.01
run e20_second_run --dataset ml-100k --victim llara --model tiny --quant 4bit --trigger-level char --poison-ratio 0.01
