"""What MODEL_NAME, SERVED_MODEL_NAME, MODEL_ALIASES and MODEL_PROMPTS say: one ModelSpec per served model."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from .values import SettingsError, read_list, read_text

DEFAULT_MODEL_ID = "all-MiniLM-L6-v2"  # the packaged model's served name
TASKS = ("embed", "rerank")  # what a served model does; MODEL_NAME may name it as a marker before the source


@dataclass(frozen=True)
class ModelSpec:
    """One model as configured: its served name, where it comes from, and the operator's additions."""

    name: str  # the served name: the id in /v1/models and in responses
    source: str = ""  # "" = the packaged default, else a local directory or a Hub id
    aliases: tuple[str, ...] = ()  # operator-defined names (MODEL_ALIASES)
    prompts: tuple[tuple[str, str], ...] = ()  # (name, text) pairs added to or replacing the model's (MODEL_PROMPTS)
    default_prompt_name: str | None = None  # None = the model's own; "" = none
    task: str = ""  # "" = detect from the model's files; "embed" or "rerank" from a marker in MODEL_NAME


def served_name_for(model_name: str) -> str:
    """The id a model is served as when not named: all-MiniLM-L6-v2, a directory's name, or the Hub id."""
    if not model_name:
        return DEFAULT_MODEL_ID
    if Path(model_name).is_dir():
        return Path(model_name).resolve().name
    return model_name


def _task_marker(source: str) -> tuple[str, str]:
    """A source's task marker (`rerank:` or `embed:`, for a model its files leave ambiguous) and the source itself."""
    marker, sep, rest = source.partition(":")
    if sep and marker.strip().lower() in TASKS:
        return marker.strip().lower(), rest.strip()
    return "", source


def _model_specs(env: dict[str, str]) -> list[ModelSpec]:
    """MODEL_NAME's comma-separated items, each `[rerank:]source` or `served-name=[rerank:]source`; empty = default."""
    raw = env.get("MODEL_NAME", "").strip()
    specs = []
    for item in raw.split(",") if raw else ["default"]:
        name, sep, source = (part.strip() for part in item.partition("=")) if "=" in item else ("", "", item.strip())
        if not source or (sep and not name):
            raise SettingsError(f"MODEL_NAME={raw!r}: item {item.strip()!r} is not 'source' or 'served-name=source' "
                                "(source: default, a directory or a Hub id)")
        task, source = _task_marker(source)
        if not source:
            raise SettingsError(f"MODEL_NAME={raw!r}: item {item.strip()!r} has a {task}: marker but no source after it")
        source = "" if source == "default" else source
        specs.append(ModelSpec(name or served_name_for(source), source, task=task))
    served = read_text(env, "SERVED_MODEL_NAME", "")
    if served:  # the one-model way of naming it, kept working
        if len(specs) > 1 or "=" in raw:
            raise SettingsError("SERVED_MODEL_NAME names a single unnamed model; with MODEL_NAME="
                                f"{raw!r} name each model in MODEL_NAME as served-name=source instead")
        specs = [replace(specs[0], name=served)]
    names = [spec.name for spec in specs]
    for name in names:
        if names.count(name) > 1:
            raise SettingsError(f"MODEL_NAME={raw!r} serves two models as {name!r}: "
                                "name one of them with served-name=source")
    return specs


def _with_aliases(env: dict[str, str], specs: list[ModelSpec]) -> list[ModelSpec]:
    """MODEL_ALIASES: comma-separated alias=served-name pairs, e.g. text-embedding-3-small=all-MiniLM-L6-v2."""
    served = [spec.name for spec in specs]
    aliases: dict[str, list[str]] = {name: [] for name in served}
    seen: set[str] = set()
    for item in read_list(env, "MODEL_ALIASES"):
        alias, _, target = (part.strip() for part in item.partition("="))
        if not alias or not target:
            raise SettingsError(f"MODEL_ALIASES item {item!r} is not alias=served-name")
        if target == "default" and target not in aliases:  # as in MODEL_NAME: the packaged model
            target = next((spec.name for spec in specs if not spec.source), target)
        if target not in aliases:
            raise SettingsError(f"MODEL_ALIASES item {item!r} points to {target!r}, which is not a served model "
                                f"(served: {', '.join(served)})")
        if alias in served or alias in seen:
            raise SettingsError(f"MODEL_ALIASES: {alias!r} already names a model; each name must name one model")
        seen.add(alias)
        aliases[target].append(alias)
    return [replace(spec, aliases=tuple(aliases[spec.name])) for spec in specs]


def _prompt_override(name: str, value) -> dict:
    """One model's MODEL_PROMPTS entry, shaped like config_sentence_transformers.json."""
    where = f"MODEL_PROMPTS[{name!r}]"
    if not isinstance(value, dict) or set(value) - {"prompts", "default_prompt_name"}:
        raise SettingsError(f'{where} must be an object with "prompts" and/or "default_prompt_name"')
    prompts = value.get("prompts", {})
    if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
        raise SettingsError(f'{where}["prompts"] must be an object of prompt name to prompt text (strings)')
    default = value.get("default_prompt_name", False)  # absent: keep the model's own default
    if default is not False and not isinstance(default, (str, type(None))):
        raise SettingsError(f'{where}["default_prompt_name"] must be a prompt name or null')
    # ModelSpec: None keeps the model's default, "" (from JSON null) applies no prompt by default.
    default = None if default is False else default or ""
    return {"prompts": tuple(prompts.items()), "default_prompt_name": default}


def _with_prompts(env: dict[str, str], specs: list[ModelSpec]) -> list[ModelSpec]:
    """MODEL_PROMPTS: JSON {"served-name": {"prompts": {"query": "..."}, "default_prompt_name": "query"}}."""
    raw = env.get("MODEL_PROMPTS", "").strip()
    if not raw:
        return specs
    try:
        overrides = json.loads(raw)
    except ValueError as exc:
        raise SettingsError(f"MODEL_PROMPTS is not valid JSON: {exc}") from None
    except RecursionError:
        raise SettingsError("MODEL_PROMPTS is nested too deeply: it must be a JSON object of served model name to "
                            '{"prompts": {...}, "default_prompt_name": ...}') from None
    if not isinstance(overrides, dict):
        raise SettingsError("MODEL_PROMPTS must be a JSON object keyed by served model name")
    served = [spec.name for spec in specs]
    for name in overrides:
        if name not in served:
            raise SettingsError(f"MODEL_PROMPTS names {name!r}, which is not a served model (served: {', '.join(served)})")
    return [replace(spec, **_prompt_override(spec.name, overrides[spec.name])) if spec.name in overrides else spec
            for spec in specs]


def models_from_env(env: dict[str, str]) -> tuple[ModelSpec, ...]:
    """Every served model as configured, aliases and prompt overrides applied."""
    return tuple(_with_prompts(env, _with_aliases(env, _model_specs(env))))
