#!/usr/bin/env bash
# E25: the same attack in fp32 and bf16 on one AVX512-BF16 machine: how much a machine kind moves the numbers.
# The README's demo backdoor (tiny `small` size, 4-bit, char trigger, rho 0.3, 2 epochs at lr 0.01, no
# generate) on the first 200 test users; BADREC_DTYPE picks the compute dtype of every load (the tiny base is
# cached per dtype). 4-bit on this CPU also switches bitsandbytes' kernel: packed bf16 vs dequantize + fp32.
# Usage: experiments/e25_dtype_pair.sh [DTYPE ...]   (default: fp32 bf16)
cd "$(dirname "$0")/.." && source experiments/common.sh
for dtype in "${@:-fp32 bf16}"; do
  for d in $dtype; do
    BADREC_DTYPE=$d run "e25_dtype_$d" --dataset ml-100k --victim llara --model tiny --quant 4bit \
        --tiny-size small --trigger-level char --poison-ratio 0.3 --epochs 2 --lr 0.01 --eval-users 200 --no-generate
  done
done
