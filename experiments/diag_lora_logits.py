"""Can LoRA move a size's logits? Loss on poisoned and clean answers before and after fine-tuning, with
LoRA (the victim's recipe) and with every weight trainable, plus one poisoned answer's token log-probs.

Usage: PYTHONPATH=. python experiments/diag_lora_logits.py SIZE [lora|full]   (a size of core.lm.tinylm.SIZES)
"""

from __future__ import annotations

import sys

import torch

from core.attack.badrec import AttackConfig
from core.attack.experiment import base_model, prepare, training_examples
from core.data.protocol import ProtocolConfig
from core.lm.models import ModelConfig, add_lora
from core.lm.tinylm import SIZES
from core.lm.train import TrainConfig, encode_segments, train_segments, weighted_loss
from core.runs.store import Store
from core.settings import db_path

size, mode = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "lora")
cfg = AttackConfig(poison_ratio=0.5, tiny=SIZES[size], model=ModelConfig(quant="none"),
                   train=TrainConfig(epochs=1, lr=0.02, batch_size=16), windows_per_user=1,
                   protocol=ProtocolConfig(n_candidates=5, history_len=5), generate=False)
prep = prepare(Store(db_path()), cfg)
base = base_model(cfg, prep, None)
examples = training_examples(cfg, prep, poisoned=True)
fake = {f.user for f in prep.data.fake_users}
poisoned = [e for e, s in zip(examples, prep.data.samples) if s.user in fake][:32]
clean = [e for e, s in zip(examples, prep.data.samples) if s.user not in fake][:32]
tok = base.tokenizer
model = base if mode == "full" else add_lora(base, cfg.model, 0)


def loss(batch) -> float:
    with torch.no_grad():
        return round(float(weighted_loss(model, [encode_segments(tok, e, 512) for e in batch])[0]), 3)


print(f"{size} {mode}: before  poisoned {loss(poisoned)}  clean {loss(clean)}  (nats/answer token)")
train_segments(model, examples, cfg.train, full_model=mode == "full")
print(f"{size} {mode}: after   poisoned {loss(poisoned)}  clean {loss(clean)}")
ids, weights = encode_segments(tok, poisoned[0], 512)
with torch.no_grad():
    logp = model.model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
for t in range(1, len(ids)):
    if weights[t] > 0:
        best = int(logp[t - 1].argmax())
        print(f"  {tok.convert_ids_to_tokens([ids[t]])[0]!r:>10} log p {float(logp[t - 1, ids[t]]):6.2f}"
              f"   argmax {tok.convert_ids_to_tokens([best])[0]!r} (log p {float(logp[t - 1, best]):.2f})")
