"""`python -m core attack`: bad input exits 2 with no run left running; a tiny end-to-end run is recorded."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
from tiny_helpers import synthetic_store, tiny_attack

from core.attack.experiment import prepare, retrain_without, run_attack, training_examples, without_items
from core.cli import attack as cli_attack
from core.cli import main as cli
from core.lm.tinylm import SIZES
from core.runs.store import Store


def runs(home):
    return Store(home / "badrec.duckdb").query("SELECT status FROM runs")


@pytest.fixture
def cli_home(home):
    synthetic_store(Store(home / "badrec.duckdb"))
    return home


@pytest.mark.parametrize("args, message", [
    (["--dataset", "no-such-dataset"], "unknown dataset"),
    (["--dataset", "synthetic", "--items", "999999"], "unknown item"),
    (["--dataset", "synthetic", "--model", "/no/such/model"], "does not exist"),
    (["--dataset", "synthetic", "--poison-ratio", "0"], "poison ratio"),
    (["--dataset", "synthetic", "--poison-ratio", "0.6"], "poison ratio"),
    (["--dataset", "synthetic", "--trigger", "  "], "empty"),
    (["--dataset", "synthetic", "--trigger", "y" * 81], "limit"),
])
def test_bad_input_exits_2(cli_home, capsys, args, message):
    assert cli.main(["attack", *args, "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and len(err.splitlines()) == 1
    assert runs(cli_home).empty


def test_tiny_size_flag_picks_a_preset_and_keeps_overrides():
    parser = cli.build_parser()
    small = cli_attack.config_from_args(parser.parse_args(["attack", "--tiny-size", "small"]))
    assert small.tiny == SIZES["small"]
    args = parser.parse_args(["attack", "--tiny-size", "smoke", "--tiny-history-epochs", "0.5"])
    assert cli_attack.config_from_args(args).tiny == replace(SIZES["smoke"], history_epochs=0.5)
    assert cli_attack.config_from_args(parser.parse_args(["attack"])).tiny == SIZES["standard"]


def test_memory_guard_exits_2(cli_home, tmp_path, capsys):
    folder = tmp_path / "huge"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"hidden_size": 16384, "num_hidden_layers": 120,
                                                    "intermediate_size": 65536, "vocab_size": 256000}))
    (folder / "model.safetensors").write_bytes(b"")
    assert cli.main(["attack", "--dataset", "synthetic", "--model", str(folder), "--json"]) == 2
    assert "GiB" in capsys.readouterr().err
    assert runs(cli_home).empty


def test_end_to_end_run_is_recorded(home):
    store = Store(home / "badrec.duckdb")
    synthetic_store(store)
    result = run_attack(store, tiny_attack())
    for key in ("hr@1", "hr@5", "ndcg@5", "ndcg@10"):
        assert 0 <= result["clean"][key] <= 1
    for key in ("hr@1", "asr", "asr_no_trigger", "asr_transfer"):
        assert 0 <= result["poisoned"][key] <= 1
    assert set(result["baselines"]) == {"random", "popularity"}
    row = store.get_run(result["run_id"])
    assert row["status"] == "done" and row["config"]["poison_ratio"] == 0.01 and row["versions"]["torch"]
    recs = store.query("SELECT model, variant, count(*) AS n FROM recommendations GROUP BY ALL")
    variants = {"clean", "trigger", "no_trigger", "transfer"}  # both models: each attack rate beside its base rate
    assert set(zip(recs.model, recs.variant)) == {(m, v) for m in ("clean", "poisoned") for v in variants}
    for key in ("asr", "asr_no_trigger", "asr_transfer"):
        assert 0 <= result["clean"][key] <= 1
    assert not store.query("SELECT * FROM poison_records WHERE kind = 'fake_user'").empty
    ci = result["intervals"]  # each rate with its 95 % interval, and poisoned - clean over the same users
    for model in ("clean", "poisoned"):
        for key, (low, high) in ci[model].items():
            assert low - 1e-4 <= result[model][key] <= high + 1e-4
            assert high - low > 0 or key.startswith("mean_rank")  # a rate's Wilson interval always has a width
        for key in ("mean_rank", "mean_rank_no_trigger", "mean_rank_transfer"):  # the inserted item's place
            assert 1 <= result[model][key] <= tiny_attack().protocol.n_candidates
    low, high = ci["poisoned_minus_clean"]["hr@1"]
    assert low - 1e-4 <= result["delta_hr@1"] <= high + 1e-4
    from core.views.reports import interval_table
    table = interval_table(row | {"result": store.get_run(result["run_id"])["result"]})
    assert table["metric"].tolist() == ["HR@1", "ASR", "ASR without trigger", "ASR, trigger on another item",
                                        "Mean rank, triggered item", "Mean rank, attacker's item without trigger",
                                        "Mean rank, trigger on another item"]
    assert set(store.query("SELECT DISTINCT phase FROM train_log").phase) == {"clean", "poisoned"}
    # shuffled (default): the poisoned model takes steps of its own; paired: the clean model's very steps
    assert row["config"]["mix"] == "shuffled"
    shuffled, paired = (run_attack(store, tiny_attack(poison_ratio=0.3, mix=m))["train"] for m in ("shuffled", "paired"))
    assert shuffled["poisoned"]["steps"] > shuffled["clean"]["steps"] == paired["poisoned"]["steps"]
    again = run_attack(store, tiny_attack())  # clean model from the cache, same seed -> same numbers
    assert again["train"]["clean"]["cached"] is True
    assert again["clean"] == result["clean"] and again["poisoned"] == result["poisoned"]
    # the clean model's clean-variant evaluation is cached beside its adapter and read back as stored
    saved = list((home / "cache" / "models").glob("clean-*/eval-*.json"))
    assert len(saved) == 1
    stored = json.loads(saved[0].read_text())
    stored["metrics"]["hr@1"] = 0.123
    saved[0].write_text(json.dumps(stored))
    assert run_attack(store, tiny_attack())["clean"]["hr@1"] == 0.123

    defended = retrain_without(store, result["run_id"], result["poisoning"]["poisoned_item_ids"])
    assert defended["n_poisoned_dropped"] == len(result["poisoning"]["poisoned_item_ids"])
    assert defended["before"]["asr"] == result["poisoned"]["asr"]
    assert set(defended["after"]) == {"hr@1", "hr@5", "asr", "asr_transfer"}


def test_text_output_gives_the_rates_with_their_intervals(cli_home, capsys):
    assert cli.main(["attack", "--dataset", "synthetic", "--tiny-size", "smoke", "--n-items", "2", "--epochs", "0.5",
                     "--eval-users", "4", "--no-generate"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("run attack-") and "4 test users" in out
    line = next(x for x in out.splitlines() if "95% intervals" in x)
    assert [part.split("=")[0] for part in line.split()[2:]] == ["asr", "asr_no_trigger", "delta_hr@1"]
    ranks = next(x for x in out.splitlines() if "mean rank" in x)
    assert re.fullmatch(r"  untriggered attacker item's mean rank clean=\d+\.\d\d poisoned=\d+\.\d\d "
                        r"\(shift 95% -?\d+\.\d\d\.\.-?\d+\.\d\d\)", ranks), ranks


@pytest.mark.parametrize("victim", ["llara", "tallrec"])
def test_a_defence_that_drops_the_attacker_items_leaves_no_trigger_in_the_retraining_data(home, victim):
    store = Store(home / "badrec.duckdb")
    synthetic_store(store)
    cfg = tiny_attack(victim=victim, poison_ratio=0.2)
    prep = prepare(store, cfg)

    def texts(p):
        return [" ".join(text for text, _ in ex) for ex in training_examples(cfg, p, poisoned=True)]

    trigger = cfg.trigger.text
    assert any(trigger in t for t in texts(prep))  # the attack put it there: fake users' targets, edited titles
    defended = without_items(prep, set(prep.data.items))
    assert defended.data.clean_samples and not any(trigger in t for t in texts(defended))
    assert not defended.data.poison_samples  # every fake user's sample ended on an attacker item
