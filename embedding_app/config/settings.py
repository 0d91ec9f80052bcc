"""The one place that reads the environment and .env: typed, validated settings."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache

from .choices import POOL_TYPES, QUANTIZE_MODES
from .env_file import env_file, read_env_file
from .keys import (
    SECRET_KEYS,
    api_keys_from_env,
    check_keys,
    check_not_blanked,
)
from .models import DEFAULT_MODEL_ID, ModelSpec, models_from_env
from .values import (
    SettingsError,
    read_bool,
    read_cache_dir,
    read_choice,
    read_int,
    read_origins,
    read_text,
    read_threads,
)

# The names other modules import from here; the parsing behind them lives in the sibling modules.
__all__ = [
    "Loaded",
    "Settings",
    "SettingsError",
    "exposure_warnings",
    "get_settings",
    "kernel_environment",
    "known_keys",
    "load_settings",
    "settings_from_env",
    "settings_warnings",
]

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# Environment variables that change which kernels torch and oneDNN run (read by them, from the process environment).
KERNEL_ENV = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS",
              "FBGEMM_ENABLE_INSTRUCTIONS")


@dataclass(frozen=True)
class Settings:
    """Everything the server can be configured with, already parsed."""

    host: str = "127.0.0.1"  # bare gunicorn is the developer's command; containers set 0.0.0.0 themselves
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
    # Where workers keep the kernels and mode measured fastest on this CPU (empty: measure at every start).
    kernel_cache_dir: str = "~/.cache/embedding-server"


def settings_from_env(env: dict[str, str]) -> Settings:
    """Parse a mapping of environment variables into Settings, or raise SettingsError."""
    return Settings(
        host=read_text(env, "EMBEDDING_SERVER_HOST", Settings.host),
        port=read_int(env, "EMBEDDING_SERVER_PORT", Settings.port, maximum=65535),
        health_port=read_int(env, "EMBEDDING_SERVER_HEALTH_PORT", Settings.health_port, maximum=65535),
        workers=read_int(env, "EMBEDDING_SERVER_WORKERS", Settings.workers, maximum=256),
        threads_per_worker=read_threads(env, "EMBEDDING_SERVER_THREADS_PER_WORKER", Settings.threads_per_worker),
        timeout=read_int(env, "EMBEDDING_SERVER_TIMEOUT", Settings.timeout, maximum=86400),
        models=models_from_env(env),
        quantize=read_choice(env, "QUANTIZE", Settings.quantize, QUANTIZE_MODES),
        pool_type=read_choice(env, "POOL_TYPE", Settings.pool_type, POOL_TYPES),
        normalize=read_bool(env, "NORMALIZE", Settings.normalize),
        hf_token=env.get("HF_TOKEN", "").strip() or None,
        trust_remote_code=read_bool(env, "TRUST_REMOTE_CODE", Settings.trust_remote_code),
        truncate=read_bool(env, "TRUNCATE", Settings.truncate),
        max_inputs=read_int(env, "MAX_INPUTS", Settings.max_inputs),
        max_tokens_per_input=read_int(env, "MAX_TOKENS_PER_INPUT", Settings.max_tokens_per_input),
        max_tokens_per_request=read_int(env, "MAX_TOKENS_PER_REQUEST", Settings.max_tokens_per_request),
        max_request_bytes=read_int(env, "MAX_REQUEST_BYTES", Settings.max_request_bytes, minimum=1024),
        batch_tokens=read_int(env, "BATCH_TOKENS", Settings.batch_tokens, minimum=64),
        api_keys=api_keys_from_env(env),
        cors_allow_origins=read_origins(env, "CORS_ALLOW_ORIGINS"),
        log_level=read_choice(env, "LOG_LEVEL", Settings.log_level, LOG_LEVELS),
        kernel_cache_dir=read_cache_dir(env, "KERNEL_CACHE_DIR", Settings.kernel_cache_dir),
    )


class _Reads(dict):
    """An empty environment that records every key asked of it."""

    def __init__(self):
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return default

    def __contains__(self, key):
        self.asked.add(key)
        return False


@cache
def known_keys() -> tuple[str, ...]:
    """Every key settings_from_env reads: it reads each one even from an empty environment, so ask it."""
    reads = _Reads()
    settings_from_env(reads)
    return tuple(sorted(reads.asked))


@dataclass(frozen=True)
class Loaded:
    """Settings, what start-up should warn about, and the values the .env file holds."""

    settings: Settings
    warnings: tuple[str, ...]
    from_file: dict[str, str]


def exposure_warnings(settings: Settings) -> list[str]:
    """A warning when the API is open to every address the server listens on beyond this machine."""
    try:
        loopback = settings.host == "localhost" or ipaddress.ip_address(settings.host).is_loopback
    except ValueError:
        loopback = False
    if settings.api_keys or loopback:
        return []
    return [(f"no API key (API_KEY or API_KEY_FILE) while listening on {settings.host}, not a loopback address: "
             f"anyone who reaches port {settings.port} can use the API")]


def load_settings(environ: Mapping[str, str], path: str) -> Loaded:
    """Settings from environ, with the .env file at path (if any) filling in what environ does not set."""
    from_file, lines = read_env_file(path, environ) if path else ({}, {})
    check_not_blanked(path, from_file, environ)
    merged = {**from_file, **environ}
    keyed = any(merged.get(key, "").strip() for key in SECRET_KEYS)
    warnings = check_keys(path, lines, environ, keyed, known_keys())
    settings = settings_from_env(merged)
    return Loaded(settings, tuple(warnings + exposure_warnings(settings)), from_file)


@cache
def _loaded() -> Loaded:
    loaded = load_settings(dict(os.environ), env_file())
    # As load_dotenv did: libraries (huggingface_hub, gunicorn) read their own keys from the environment.
    for key, value in loaded.from_file.items():
        os.environ.setdefault(key, value)
    return loaded


def get_settings() -> Settings:
    """Settings from the process environment, with the .env file filling in what it does not set."""
    return _loaded().settings


def settings_warnings() -> tuple[str, ...]:
    """What start-up should warn about: keys nobody reads, an open API on a network address."""
    return _loaded().warnings


def kernel_environment() -> dict[str, str]:
    """The kernel-selecting variables (KERNEL_ENV) as the process has them ("" when unset): they key cached choices."""
    return {name: os.environ.get(name, "") for name in KERNEL_ENV}
