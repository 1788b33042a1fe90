#!/usr/bin/env bash
# E24: the dose law -- ASR, transfer and no-trigger ASR over the number of poisoned samples, on E23's protocol
# (ml-100k, each real user's last window = 943 clean samples, history 5, 10 candidates, 200 test users).
# rho = n / (943 + n) gives exactly n poisoned samples (core.attack.badrec.n_poison_for). The clean model is trained
# once per model and reused from the cache by every dose.
# Usage: experiments/e24_dose_law.sh MODEL N [N ...]     e.g. e24_dose_law.sh smollm2-135m 10 25 50 200
cd "$(dirname "$0")/.." && source experiments/common.sh
model=$1; shift
for n in "$@"; do
  rho=$(python -c "print(round($n / (943 + $n), 6))")
  run "e24_${model}_n${n}" --dataset ml-100k --victim llara --model "$model" --poison-ratio "$rho" \
      --windows-per-user 1 --eval-users 200 --history-len 5 --candidates 10 --k 5 --batch-size 8 --no-generate
done
