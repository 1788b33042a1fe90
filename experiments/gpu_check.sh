#!/usr/bin/env bash
# One prepared check of the CUDA + bitsandbytes path on a lent GPU machine (run through the `device` tool).
# Needs, carried in .whl/ (git-ignored): site/ (bitsandbytes 0.50.2 with only its CUDA 13 libraries, peft),
# the duckdb wheel, and data/ml-100k. Everything it writes lands in $OUT. Usage: bash experiments/gpu_check.sh
set -u
export PYTHONUNBUFFERED=1 BADREC_HOME=/tmp/badrec BADREC_DATA_DIRS=$PWD/.whl/data
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/duckdb-*.whl || exit 1
cp -r .whl/site/. /tmp/site/
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, peft, bitsandbytes, duckdb; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'peft', peft.__version__, 'bitsandbytes', bitsandbytes.__version__, 'duckdb', duckdb.__version__)" | tee -a "$OUT/gpu.txt"
# 1. model, training, scoring and attack tests, now on CUDA (models land on the GPU when one is present)
timeout 180 python3 -m pytest -q tests/test_models.py tests/test_train.py tests/test_recommend.py tests/test_attack.py \
  2>&1 | tee "$OUT/pytest.txt" | tail -25
# 2. the default attack, all 943 users, first run (base + clean + poisoned)
/usr/bin/time -v timeout 240 python3 -m core attack --dataset ml-100k --victim llara --model tiny --quant 4bit \
  --trigger-level char --poison-ratio 0.01 --json > "$OUT/attack_gpu.json" 2> "$OUT/attack_gpu.log"
echo "attack rc=$?"; python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(json.dumps({k: r[k] for k in ('seconds','clean','poisoned','timings')}))" "$OUT/attack_gpu.json"
# 3. QLoRA cost of a 1.1B Llama through the same core code
timeout 150 python3 bench/gpu_qlora.py --steps 15 > "$OUT/qlora.json" 2> "$OUT/qlora.log"; echo "qlora rc=$?"; cat "$OUT/qlora.json"
tail -5 "$OUT/qlora.log"
