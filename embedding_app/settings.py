"""The one place that reads the environment and .env: typed, validated settings."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from functools import cache

from dotenv import find_dotenv, load_dotenv
from dotenv.parser import parse_stream

from .model_source import DEFAULT_MODEL_ID, ModelSpec, served_name_for
from .modes import POOL_TYPES, QUANTIZE_MODES

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class SettingsError(ValueError):
    """A setting has a value the server cannot start with."""


@dataclass(frozen=True)
class Settings:
    """Everything the server can be configured with, already parsed."""

    host: str = "0.0.0.0"
    port: int = 7860
    health_port: int = 7861  # /health, /livez, /readyz answered by the master, never behind a busy worker
    workers: int = 2
    threads_per_worker: int | None = None  # None = auto: the cores, shared by the workers busy at each forward
    timeout: int = 120
    # MODEL_NAME (+ SERVED_MODEL_NAME, MODEL_ALIASES, MODEL_PROMPTS); the first model answers requests naming none.
    models: tuple[ModelSpec, ...] = (ModelSpec(DEFAULT_MODEL_ID),)
    quantize: str = "true"
    pool_type: str = ""  # empty = what the model's 1_Pooling/config.json says, else mean
    normalize: bool = True
    hf_token: str | None = field(default=None, repr=False)  # never printed
    trust_remote_code: bool = False
    truncate: bool = True
    max_inputs: int = 2048
    max_tokens_per_input: int = 0  # 0 = the model's maximum; a larger value is capped at it
    max_tokens_per_request: int = 300_000
    # 2048 inputs of 256 tokens (or ~1000 characters) take 2-3 MB of JSON; 8 MiB leaves room for 512-token models.
    max_request_bytes: int = 8 * 1024 * 1024
    batch_tokens: int = 8192
    api_keys: tuple[str, ...] = field(default=(), repr=False)  # never printed
    cors_allow_origins: tuple[str, ...] = ()
    log_level: str = "info"


def _text(env: dict[str, str], key: str, default: str) -> str:
    return env.get(key, "").strip() or default


def _int(env: dict[str, str], key: str, default: int, minimum: int = 1, maximum: int = 1 << 40) -> int:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{key}={raw!r} is not an integer") from None
    if not minimum <= value <= maximum:
        raise SettingsError(f"{key}={value} is out of range: allowed {minimum}..{maximum}")
    return value


def _threads(env: dict[str, str], key: str, default: int | None) -> int | None:
    """A thread count, or `auto` (None)."""
    if env.get(key, "").strip().lower() == "auto":
        return None
    try:
        return _int(env, key, default, maximum=256)
    except SettingsError as exc:
        raise SettingsError(f"{exc}; or auto (the cores, shared by the busy workers)") from None


def _bool(env: dict[str, str], key: str, default: bool) -> bool:
    raw = env.get(key, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingsError(f"{key}={raw!r} is not one of: {', '.join(_TRUE + _FALSE)}")


def _choice(env: dict[str, str], key: str, default: str, allowed: tuple[str, ...]) -> str:
    raw = env.get(key, "").strip().lower()
    if not raw:
        return default
    if raw not in allowed:
        raise SettingsError(f"{key}={raw!r} is not one of: {', '.join(allowed)}")
    return raw


def _list(env: dict[str, str], key: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in env.get(key, "").split(",") if item.strip())


def _model_specs(env: dict[str, str]) -> list[ModelSpec]:
    """MODEL_NAME's comma-separated items, each `source` or `served-name=source`; empty = the packaged model."""
    raw = env.get("MODEL_NAME", "").strip()
    specs = []
    for item in raw.split(",") if raw else ["default"]:
        name, sep, source = (part.strip() for part in item.partition("=")) if "=" in item else ("", "", item.strip())
        if not source or (sep and not name):
            raise SettingsError(f"MODEL_NAME={raw!r}: item {item.strip()!r} is not 'source' or 'served-name=source' "
                                "(source: default, a directory or a Hub id)")
        source = "" if source == "default" else source
        specs.append(ModelSpec(name or served_name_for(source), source))
    served = _text(env, "SERVED_MODEL_NAME", "")
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
    for item in _list(env, "MODEL_ALIASES"):
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
    if not isinstance(overrides, dict):
        raise SettingsError("MODEL_PROMPTS must be a JSON object keyed by served model name")
    served = [spec.name for spec in specs]
    for name in overrides:
        if name not in served:
            raise SettingsError(f"MODEL_PROMPTS names {name!r}, which is not a served model (served: {', '.join(served)})")
    return [replace(spec, **_prompt_override(spec.name, overrides[spec.name])) if spec.name in overrides else spec
            for spec in specs]


def _models(env: dict[str, str]) -> tuple[ModelSpec, ...]:
    return tuple(_with_prompts(env, _with_aliases(env, _model_specs(env))))


def _keys(env: dict[str, str], key: str) -> tuple[str, ...]:
    """API keys; a value that is set but holds no key (blanks, commas) is a typo, not a wish for no auth."""
    keys = _list(env, key)
    if env.get(key) and not keys:
        raise SettingsError(f"{key} is set but holds no key (only blanks or commas); "
                            f"leave it empty ({key}=) to serve without authentication")
    return keys


def settings_from_env(env: dict[str, str]) -> Settings:
    """Parse a mapping of environment variables into Settings, or raise SettingsError."""
    return Settings(
        host=_text(env, "EMBEDDING_SERVER_HOST", Settings.host),
        port=_int(env, "EMBEDDING_SERVER_PORT", Settings.port, maximum=65535),
        health_port=_int(env, "EMBEDDING_SERVER_HEALTH_PORT", Settings.health_port, maximum=65535),
        workers=_int(env, "EMBEDDING_SERVER_WORKERS", Settings.workers, maximum=256),
        threads_per_worker=_threads(env, "EMBEDDING_SERVER_THREADS_PER_WORKER", Settings.threads_per_worker),
        timeout=_int(env, "EMBEDDING_SERVER_TIMEOUT", Settings.timeout, maximum=86400),
        models=_models(env),
        quantize=_choice(env, "QUANTIZE", Settings.quantize, QUANTIZE_MODES),
        pool_type=_choice(env, "POOL_TYPE", Settings.pool_type, POOL_TYPES),
        normalize=_bool(env, "NORMALIZE", Settings.normalize),
        hf_token=env.get("HF_TOKEN", "").strip() or None,
        trust_remote_code=_bool(env, "TRUST_REMOTE_CODE", Settings.trust_remote_code),
        truncate=_bool(env, "TRUNCATE", Settings.truncate),
        max_inputs=_int(env, "MAX_INPUTS", Settings.max_inputs),
        max_tokens_per_input=_int(env, "MAX_TOKENS_PER_INPUT", Settings.max_tokens_per_input),
        max_tokens_per_request=_int(env, "MAX_TOKENS_PER_REQUEST", Settings.max_tokens_per_request),
        max_request_bytes=_int(env, "MAX_REQUEST_BYTES", Settings.max_request_bytes, minimum=1024),
        batch_tokens=_int(env, "BATCH_TOKENS", Settings.batch_tokens, minimum=64),
        api_keys=_keys(env, "API_KEY"),
        cors_allow_origins=_list(env, "CORS_ALLOW_ORIGINS"),
        log_level=_choice(env, "LOG_LEVEL", Settings.log_level, LOG_LEVELS),
    )


def check_env_file(path: str) -> None:
    """Raise SettingsError naming the first line of the .env file that python-dotenv cannot parse."""
    # python-dotenv skips such a line with a warning: an unterminated quote in API_KEY="... would silently
    # start the server without authentication. The line itself is never shown: it may hold a secret.
    with open(path, encoding="utf-8") as stream:
        for binding in parse_stream(stream):
            if binding.error:
                # The binding starts at the blank lines before it; count them to name the line itself.
                text = binding.original.string
                line = binding.original.line + text[:len(text) - len(text.lstrip())].count("\n")
                raise SettingsError(f"{path}, line {line}: not understood as KEY=value "
                                    "(an unterminated quote?); fix or remove the line")


def env_file() -> str:
    """The .env file to read: ENV_FILE if set (it must exist), else the nearest .env from the working directory."""
    path = os.environ.get("ENV_FILE", "").strip()
    if path and not os.path.isfile(path):
        raise SettingsError(f"ENV_FILE={path!r} is not a file")
    return path or find_dotenv(usecwd=True)


@cache
def get_settings() -> Settings:
    """Settings from the process environment, with the .env file filling in what it does not set."""
    path = env_file()
    if path:
        check_env_file(path)
        load_dotenv(path, override=False)
    return settings_from_env(dict(os.environ))
