"""E41: can a scan tell, without labels, whether re-ranking by deletion contrast helps its catalog?

E36 found that re-ranking the top titles by logit(score) + deletion contrast lifts poisoned artist names
(lastfm) and film titles but costs game titles (steam), whose numbers and codes are removable spans too. The
analyst has no labels, so the scan would have to tell from the catalog itself. The check
(`core.pscanner.rerank.check_rerank`): fresh agent triggers placed on a seeded sample of the catalog's own
titles (`probe_texts`), each scored by its host's fold scanner, are ranked among the catalog's titles with
and without the re-ranking; keep it where they rank better. This script runs the CLI's default scan of the
held-out suite's poisoned catalogs (as E36) and reports, per seed, the check's verdict for 30, 60 and 120
probes beside what the re-ranking actually did to the held-out poisoned titles.

Tuning seeds (100-109) while choosing; evaluation seeds once, after:

    BADREC_HOME=H BADREC_DATA_DIRS=../shared/data python experiments/e41_rerank_check.py \\
        --dataset steam --sample 1500 --seeds 100 --out OUT.json
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.heldout_suite import LEARNED, TUNING_SEEDS, crossfit_as_cli, experiment_main, poison, recall_at_fpr  # noqa: E402

PROBES = (30, 60, 120)


def run_seed(titles: list[str], seed: int) -> dict:
    from core.metrics import detection_metrics
    from core.pscanner.agent import offline_triggers
    from core.pscanner.rerank import PROBE_SEED, check_rerank, probe_texts, reorder_top, rerank_size, top_titles

    poisoned, planted = poison(titles, seed)
    t0 = time.perf_counter()
    cfg, recipe, cf = crossfit_as_cli(poisoned, domain="e41")
    own = cf.score(poisoned)
    top = top_titles(own, rerank_size(len(own), cfg.rerank, cfg.rerank_min))
    top_contrast = cf.contrast([poisoned[i] for i in top])
    t_scan = time.perf_counter() - t0
    fam = np.array([p.family if p else "" for p in planted])
    clean, pos = fam == "", np.isin(fam, LEARNED)
    learned = clean | pos
    out = {"seed": seed, "tuning_seed": seed in TUNING_SEEDS, "scanner": recipe.model.name, "n_titles": len(titles),
           "n_learned": int(pos.sum()), "n_reranked": len(top), "scan_s": round(t_scan, 1), "heldout": {}, "check": {}}
    for name, s in (("without", own), ("with", reorder_top(own, top, top_contrast))):
        m = detection_metrics((s >= cf.threshold)[learned], pos[learned], s[learned])
        out["heldout"][name] = {"auc": m["auc"], "recall_at_fpr_0.01": recall_at_fpr(s, pos, clean), "f1": m["f1"]}
    pool = {t.text for t in offline_triggers(recipe.agent(recipe.n_triggers, recipe.seed))}
    t1 = time.perf_counter()
    texts, hosts = probe_texts(poisoned, recipe.agent(max(PROBES), PROBE_SEED + recipe.seed), pool)
    p_scores = cf.score(texts, hosts)
    p_contrast = np.full(len(texts), np.nan)

    def contrast(idx: np.ndarray) -> np.ndarray:
        todo = [i for i in idx if np.isnan(p_contrast[i])]
        p_contrast[todo] = cf.contrast([texts[i] for i in todo], [hosts[i] for i in todo])
        return p_contrast[idx]

    for n in PROBES:
        chk = check_rerank(own, top, top_contrast, p_scores[:n], contrast, cfg.scanner.target_fpr)
        out["check"][str(n)] = asdict(chk)
    out["check_s"] = round(time.perf_counter() - t1, 1)
    out["probes"] = [{"text": t, "score": round(float(s), 4)} for t, s in zip(texts, p_scores)]
    out["arrays"] = {"scores": own.tolist(), "top": top.tolist(), "top_contrast": top_contrast.tolist(),
                     "probe_scores": p_scores.tolist(),  # probe contrasts only where a check needed one
                     "probe_contrast": [None if np.isnan(c) else float(c) for c in p_contrast],
                     "threshold": cf.threshold, "target_fpr": cfg.scanner.target_fpr}
    return out


def main() -> None:
    runs = experiment_main(run_seed)
    print(json.dumps([{k: r[k] for k in ("seed", "heldout", "check", "scan_s", "check_s")} for r in runs], indent=1))


if __name__ == "__main__":
    main()
