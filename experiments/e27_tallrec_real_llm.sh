#!/usr/bin/env bash
# E27: BadRec against TALLRec (yes/no victim: P(Yes) per candidate, AUC beside ASR) on the real pretrained LLM,
# E23's protocol otherwise (ml-100k, each real user's last window, history 5, 10 candidates, rho 0.1, 200 users).
# Usage: experiments/e27_tallrec_real_llm.sh [NAME] [extra attack flags...]
cd "$(dirname "$0")/.." && source experiments/common.sh
name=${1:-e27_tallrec_smollm2}; shift || true
run "$name" --dataset ml-100k --victim tallrec --model smollm2-135m --poison-ratio 0.1 --windows-per-user 1 \
    --eval-users 200 --history-len 5 --candidates 10 --k 5 --batch-size 8 --no-generate "$@"
