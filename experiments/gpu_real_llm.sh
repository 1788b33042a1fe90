#!/usr/bin/env bash
# The paper's setting on a lent GPU (device tool), prepared but not yet run (no GPU was lent to the session
# that wrote it): SmolLM2-135M (or MODEL) fine-tuned on ALL training windows of ml-100k (~97k samples), rho
# 0.01 (~970 poisoned samples), 20 candidates, history 10, then TALLRec at the same dose.
#
# Getting the weights there: the device machine reaches no package index and a run carries at most 64 MiB,
# while the SmolLM2 GGUF is 98 MB. Split it here into two parts under .whl/ (git-ignored) and carry one part
# per call while the machine stays warm (ignored outputs persist between calls of one warm machine):
#   split -b 49M "$BADREC_HOME/cache/downloads/SmolLM2-135M-Instruct.Q4_1.gguf" .whl/smol.part.
#   run(carry=[".whl/smol.part.aa", ".whl/site"], "true"); run(carry=[".whl/smol.part.ab", ...], this script)
# The script rebuilds the file, checks its sha256 and converts it with the same core code
# (`--model PATH.gguf`). Alternatively set MODEL to a Hugging Face id already in the GPU host's cache.
# Dependencies as experiments/gpu_check.sh (.whl/site: bitsandbytes + peft; duckdb wheel; data/ml-100k).
# Paths: BADREC_SCRATCH (default experiments/out, git-ignored) holds the installed packages, the home and the model.
source experiments/gpu_env.sh
if [ -z "${MODEL:-}" ]; then
  cat .whl/smol.part.* > "$scratch/smollm2.gguf"
  echo "b179c9523d0e6a0f  (first 16 hex of the expected sha256)"; sha256sum "$scratch/smollm2.gguf" | tee "$OUT/gguf.sha256"
  MODEL=$scratch/smollm2.gguf
fi
windows=${WINDOWS:-1000}   # more than any user has: every training window
for victim in llara tallrec; do
  timeout 280 python3 -m core attack --dataset ml-100k --victim "$victim" --model "$MODEL" --poison-ratio 0.01 \
    --windows-per-user "$windows" --history-len 10 --candidates 20 --no-generate --json \
    > "$OUT/paper_$victim.json" 2> "$OUT/paper_$victim.log"
  echo "$victim rc=$?"; tail -c 600 "$OUT/paper_$victim.json"
done
