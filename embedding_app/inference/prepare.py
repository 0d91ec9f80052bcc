"""Put a model (Hub id, local directory or the packaged default) into one directory that workers load from.

    python -m embedding_app.inference.prepare BAAI/bge-small-en-v1.5 --out /models/bge-small-en-v1.5
    python -m embedding_app.inference.prepare default --out /models/all-MiniLM-L6-v2 --quantize bf16
    python -m embedding_app.inference.prepare cross-encoder/ms-marco-MiniLM-L6-v2 --out /models/ms-marco-MiniLM-L6-v2

A cross-encoder (reranker) is prepared the same way: its config.json says so, and the server serves it for rerank.

--out is written as a sibling ".NAME.partial" directory and renamed when complete, so it must be a
subdirectory of the volume, not its mount point.

Run it once per volume (a Kubernetes init container, a CI step, by hand), then serve with
MODEL_NAME=<the directory>: no server process ever downloads anything.
"""

from __future__ import annotations

import argparse
import fnmatch
import shutil
import sys
from pathlib import Path

from embedding_app.config.settings import SettingsError, get_settings

from .model_source import HUB_FILES, ModelSourceError, locate_model, resolve_model

# Only bf16 is worth storing: it halves the files and QUANTIZE=bf16 serves them unchanged. int8 is
# applied at load in ~0.1 s, so an int8 checkpoint would save no start-up time.
STORED_DTYPES = ("none", "bf16")


def copy_model(source: Path, out: Path) -> None:
    """Copy the files a model directory needs (weights, configs, tokenizer, pooling) from source to out."""
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source).as_posix()
        if path.is_file() and any(fnmatch.fnmatch(relative, pattern) for pattern in HUB_FILES):
            (out / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, out / relative)


def store_bf16(directory: Path, trust_remote_code: bool, task: str = "embed") -> None:
    """Rewrite the directory's weights in bf16 (the server upcasts them at load); a reranker keeps its head."""
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification

    auto_class = AutoModelForSequenceClassification if task == "rerank" else AutoModel
    model = auto_class.from_pretrained(directory, dtype=torch.float32, trust_remote_code=trust_remote_code)
    for weights in directory.glob("*.safetensors"):
        weights.unlink()  # sharded or not, save_pretrained writes a fresh set
    model.to(torch.bfloat16).save_pretrained(directory)


def fetch(model: str, target: Path, token: str | None) -> None:
    """Copy the packaged default or a local directory, or download a Hub id, into target."""
    directory = locate_model("" if model == "default" else model, token, target=target)
    if directory.resolve() != target.resolve():  # a Hub id is downloaded straight into target
        copy_model(directory, target)


def is_prepared(out: Path) -> bool:
    """Whether out already holds a model (what --if-missing checks)."""
    return (out / "config.json").is_file()


def prepare(model: str, out: Path, quantize: str = "none", force: bool = False, if_missing: bool = False) -> Path:
    """Fetch model into out (optionally as bf16) and check it is a model directory; returns out."""
    if if_missing and is_prepared(out):
        return out
    if out.exists() and any(out.iterdir()) and not force:
        raise ModelSourceError(f"{out} is not empty (use --force to overwrite it)")
    settings = get_settings()
    # Built beside out and renamed at the end: a server waiting for out never sees half a model.
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        fetch(model, partial, settings.hf_token)
        source = resolve_model(str(partial), None)  # fails here, not in every worker, if it is not a model directory
        if quantize == "bf16":
            store_bf16(partial, settings.trust_remote_code, source.task)
        for path in partial.rglob("*"):  # the container user (uid 10001) must read what root prepared
            path.chmod(0o755 if path.is_dir() else 0o644)
        partial.chmod(0o755)
        shutil.rmtree(out, ignore_errors=True)
        partial.rename(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m embedding_app.inference.prepare", description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a Hub id, a local model directory, or 'default' (all-MiniLM-L6-v2)")
    parser.add_argument("--out", required=True, type=Path, help="the directory to write (serve it with MODEL_NAME)")
    parser.add_argument("--quantize", choices=STORED_DTYPES, default="none",
                        help="bf16: store half-size weights (serve with QUANTIZE=bf16 or true)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--if-missing", action="store_true",
                        help="do nothing when --out already holds a model (for init containers and jobs)")
    args = parser.parse_args(argv)
    # Run from init containers and CI jobs whose output is a log: no tqdm bars (transformers, imported
    # later, takes the same setting from huggingface_hub).
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()
    already = args.if_missing and is_prepared(args.out)
    try:
        out = prepare(args.model, args.out, args.quantize, args.force, args.if_missing)
    except (ModelSourceError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    done = "already prepared, left as it is" if already else "prepared"
    print(f"{done}: {out.resolve()}; serve it with MODEL_NAME={out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
