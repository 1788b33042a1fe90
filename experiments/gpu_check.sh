#!/usr/bin/env bash
# One prepared check of the CUDA + bitsandbytes path on a lent GPU machine (run through the `device` tool),
# plus one research run that needs the GPU's speed. Needs, carried in .whl/ (git-ignored): site/
# (bitsandbytes 0.50.2 with only its CUDA 13 libraries, peft 0.21.2), the duckdb wheel, data/ml-100k.
# Everything it keeps lands in $OUT (at most 8 files). Usage: bash experiments/gpu_check.sh
# Paths: BADREC_SCRATCH (default experiments/out, git-ignored) holds the installed packages, the home and the base.
source experiments/gpu_env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, peft, bitsandbytes, duckdb; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'peft', peft.__version__, 'bitsandbytes', bitsandbytes.__version__, 'duckdb', duckdb.__version__)" | tee -a "$OUT/gpu.txt"
# 1. model, training, scoring and attack tests, now on CUDA (models land on the GPU when one is present)
timeout 90 python3 -m pytest -q -x tests/test_models.py tests/test_train.py tests/test_recommend.py tests/test_attack.py \
  2>&1 | tee "$OUT/pytest.txt" | tail -15
# 2. QLoRA cost of a 1.1B Llama through the same core code
timeout 100 python3 bench/gpu_qlora.py --steps 10 --quants 4bit,none > "$OUT/qlora.json" 2> "$OUT/qlora.log"
echo "qlora rc=$?"; cat "$OUT/qlora.json"; tail -3 "$OUT/qlora.log"
# 3. research: does the tiny base learn to copy with ~10x the CPU's pre-training budget? (base saved for e06)
pilot_cfg=${PILOT:-'{}'}
mkdir -p "$scratch/base" && SAVE_DIR=$scratch/base SAVE_BF16=1 timeout 230 python3 experiments/e05_copy_pilot.py "$pilot_cfg" 100 \
  > "$OUT/pilot.jsonl" 2> "$OUT/pilot.err"; echo "pilot rc=$?"; cat "$OUT/pilot.jsonl"; tail -3 "$OUT/pilot.err"
tar -C "$scratch" -cf "$OUT/base.tar" base && ls -la "$OUT"
