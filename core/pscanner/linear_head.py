"""The frozen-LLM scanner's linear head, and the prior head that heads trained on few titles start from.

A fold of a 50-title catalog trains its head on ~30 titles: a few hundred examples for a few thousand
features. The prior is the same recipe's head trained once on ~1,600 titles of other catalogs (movie and
artist titles, none of the evaluation suite's; `experiments/e62_prior_head.py` builds it), shipped in
`assets/scanner_prior/`. A small catalog's heads shrink towards it rather than towards zero: they keep what
it learnt of triggers in general and move where their own catalog disagrees (E62 in docs/SCANNER.md).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PRIOR_DIR = Path(__file__).resolve().parents[2] / "assets" / "scanner_prior"
PRIOR_HEAD, PRIOR_META = "head.safetensors", "head.json"


@dataclass
class LinearHead:
    """Logistic regression on standardised features: P(poisoned) = sigmoid(((x - mu) / sd) . w + b)."""

    mu: np.ndarray
    sd: np.ndarray
    w: np.ndarray
    b: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        """P(poisoned) per row."""
        z = ((np.asarray(x, np.float64) - self.mu) / self.sd) @ self.w + self.b
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


def fit_head(x: np.ndarray, y: np.ndarray, l2: float, max_iter: int = 200, prior: LinearHead | None = None
             ) -> LinearHead:
    """L2-regularised logistic regression (L-BFGS, full batch: deterministic), classes balanced.

    Without a prior the weights shrink towards zero; with one, towards the prior's weights (rewritten on these
    features' own standardisation) and the fit starts there; the bias is free either way."""
    import torch

    X = torch.tensor(x, dtype=torch.float64)
    Y = torch.tensor(y, dtype=torch.float64)
    mu, sd = X.mean(0), X.std(0) + 1e-4
    Xn = (X - mu) / sd
    pos = float(Y.mean())
    weight = torch.where(Y > 0, 0.5 / max(pos, 1e-6), 0.5 / max(1 - pos, 1e-6))
    w0, b0 = torch.zeros(X.shape[1], dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    if prior is not None:  # the prior's logit ((x - mu_p) / sd_p) . w_p + b_p, written in Xn
        slope = torch.tensor(prior.w / prior.sd, dtype=torch.float64)
        w0 = slope * sd
        b0 = b0 + float((mu - torch.tensor(prior.mu, dtype=torch.float64)) @ slope) + prior.b
    w = w0.clone().requires_grad_(True)
    b = b0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(Xn @ w + b, Y, weight=weight) \
            + l2 * ((w - w0) ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return LinearHead(mu.numpy(), sd.numpy(), w.detach().numpy(), float(b.detach()))


def save_head(head: LinearHead, path: Path) -> None:
    """The head's four tensors as safetensors (no pickle)."""
    from safetensors.numpy import save_file

    save_file({"mu": head.mu, "sd": head.sd, "w": head.w, "b": np.array([head.b])}, str(path))


def load_head(path: Path) -> LinearHead:
    """A head saved by `save_head`."""
    from safetensors.numpy import load_file

    t = load_file(str(path))
    return LinearHead(t["mu"], t["sd"], t["w"], float(t["b"][0]))


@dataclass(frozen=True)
class Prior:
    """The shipped prior head, with the checksum that enters the cache key of every head fitted towards it."""

    head: LinearHead
    sha256: str
    meta: dict


def shipped_prior(model: str, layers: tuple[int, ...], folder: Path | None = None) -> Prior | None:
    """The prior head for features of `model` at `layers`, or None where none was built for them."""
    folder = PRIOR_DIR if folder is None else folder
    path, meta_path = folder / PRIOR_HEAD, folder / PRIOR_META
    if not (path.exists() and meta_path.exists()):
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("model") != model or tuple(meta.get("layers", ())) != tuple(layers):
        return None
    return Prior(load_head(path), hashlib.sha256(path.read_bytes()).hexdigest(), meta)
