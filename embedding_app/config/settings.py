"""The one place that reads the environment and .env: typed, validated settings."""

from __future__ import annotations

import difflib
import io
import ipaddress
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache

from dotenv import find_dotenv
from dotenv.parser import Binding, parse_stream
from dotenv.variables import Variable, parse_variables

from embedding_app.inference.model_source import (
    DEFAULT_MODEL_ID,
    ModelSpec,
    served_name_for,
)

from .choices import POOL_TYPES, QUANTIZE_MODES

TASKS = ("embed", "rerank")  # what a served model does; MODEL_NAME may name it as a marker before the source
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
# The keys that turn authentication on: empty, blanked or misspelt, they would serve without it.
SECRET_KEYS = ("API_KEY", "API_KEY_FILE")
# Read by the compose stack, the proxy, gunicorn or libraries rather than here: welcome in .env without a word.
STACK_KEYS = ("ENV_FILE", "EMBEDDING_PUBLISH", "EMBEDDING_IMAGE", "LOCAL_MODEL_DIR", "PROXY_MAX_IN_FLIGHT",
              "PROXY_CLIENT_TIMEOUT", "PROXY_UPSTREAM", "PROXY_PORT", "FORWARDED_ALLOW_IPS", "GUNICORN_CMD_ARGS")
STACK_PREFIXES = ("COMPOSE_", "DOCKER_", "HF_", "OMP_", "GOMP_", "KMP_", "MKL_", "TORCH_")
# How alike (difflib ratio, upper-cased) an unknown key must be to a known one to count as its typo.
TYPO_CUTOFF = 0.85
# One origin: scheme://host[:port], where the host may start with "*." (any subdomain); no path, no trailing slash.
_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://(\*\.)?([a-z0-9-]+(\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(:[0-9]{1,5})?",
                     re.IGNORECASE)


class SettingsError(ValueError):
    """A setting has a value the server cannot start with."""


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


def _origins(env: dict[str, str], key: str) -> tuple[str, ...]:
    """Browser origins, each checked: flask-cors would read a malformed one (with *, ? or $) as a regular expression."""
    origins = _list(env, key)
    for origin in origins:
        if origin != "*" and not _ORIGIN.fullmatch(origin):
            raise SettingsError(f"{key} item {origin!r} is not an origin: allowed scheme://host[:port] "
                                "(no path, no trailing slash), scheme://*.domain[:port] for every subdomain "
                                "of domain, or *")
    return origins


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


def _models(env: dict[str, str]) -> tuple[ModelSpec, ...]:
    return tuple(_with_prompts(env, _with_aliases(env, _model_specs(env))))


def _cache_dir(env: dict[str, str], key: str, default: str) -> str:
    """A directory, or off (empty string) to keep nothing."""
    raw = env.get(key, "").strip()
    return "" if raw.lower() == "off" else raw or default


def _keys(env: dict[str, str]) -> tuple[str, ...]:
    """API keys from API_KEY or the file API_KEY_FILE names; authentication is off only when both are absent."""
    # Set but holding no key (empty, blanks, commas; in compose also an unset ${NAME}, which compose makes ""):
    # a mistake to report, never a wish for open access.
    for key in SECRET_KEYS:
        if key in env and not env[key].replace(",", "").strip():
            raise SettingsError(f"{key} is set but holds no key (empty, blanks or commas): write the key, or unset "
                                f"{key} (remove the setting) to serve without authentication")
    if "API_KEY" in env and "API_KEY_FILE" in env:
        raise SettingsError("API_KEY and API_KEY_FILE are both set: set one of them")
    path = env.get("API_KEY_FILE", "").strip()
    if not path:
        return _list(env, "API_KEY")
    try:
        with open(path, encoding="utf-8") as stream:
            raw = stream.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise SettingsError(f"API_KEY_FILE={path!r} cannot be read: {reason}") from None
    keys = tuple(key.strip() for key in re.split(r"[,\n]", raw) if key.strip())  # one key a line, or commas
    if not keys:
        raise SettingsError(f"API_KEY_FILE={path!r} holds no key: write one key (or one a line) into it")
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
        api_keys=_keys(env),
        cors_allow_origins=_origins(env, "CORS_ALLOW_ORIGINS"),
        log_level=_choice(env, "LOG_LEVEL", Settings.log_level, LOG_LEVELS),
        kernel_cache_dir=_cache_dir(env, "KERNEL_CACHE_DIR", Settings.kernel_cache_dir),
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


def _line(binding: Binding) -> int:
    """The line a binding's key is on (a binding starts at the blank lines and comments before it)."""
    text = binding.original.string
    return binding.original.line + text[:len(text) - len(text.lstrip())].count("\n")


def _quoted_literally(binding: Binding) -> bool:
    """Whether the value is in single quotes, which docker compose reads literally (no $ substitution)."""
    return binding.original.string.strip().partition("=")[2].lstrip().startswith("'")


def _resolve(where: str, key: str, binding: Binding, earlier: Mapping[str, str], environ: Mapping[str, str]) -> str:
    """The value with ${NAME} and ${NAME:-default} substituted (environment first, as python-dotenv does)."""
    if _quoted_literally(binding):
        return binding.value
    atoms = list(parse_variables(binding.value))
    if "$" in "".join(atom.value for atom in atoms if not isinstance(atom, Variable)):
        # docker compose substitutes $NAME too (and $$), python-dotenv only ${NAME}: the server and the compose
        # stack would read different values; `API_KEY=Xq7$kP9` becomes `Xq7` in compose. The value is not shown.
        raise SettingsError(f"{where}: the value of {key} holds a '$' that docker compose would read as a variable "
                            f"(cutting the value there): put the value in single quotes, {key}='...', which compose "
                            "and this server both read literally")
    values = {**earlier, **environ}
    # A key the environment sets does not need its line's value (compose resolved it already, from the shell).
    for atom in atoms if key not in environ else ():
        if isinstance(atom, Variable) and atom.default is None and atom.name not in values:
            raise SettingsError(f"{where}: {key} refers to ${{{atom.name}}}, which is set neither in the environment "
                                f"nor earlier in the file: set {atom.name}, or give a default, ${{{atom.name}:-value}}")
    return "".join(atom.resolve(values) for atom in atoms)


def _bindings(path: str) -> list[Binding]:
    """The parsed lines of a .env file; SettingsError for a file that cannot be read or is not UTF-8."""
    try:
        with open(path, encoding="utf-8-sig") as stream:  # a UTF-8 byte order mark is harmless
            text = stream.read()
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{path} is not UTF-8 text (byte {exc.start}): save it as UTF-8, "
                            "not UTF-16 or Latin-1") from None
    except OSError as exc:
        raise SettingsError(f"{path} cannot be read: {exc.strerror}") from None
    if "\0" in text:
        raise SettingsError(f"{path} holds NUL characters (UTF-16?): save it as UTF-8")
    return list(parse_stream(io.StringIO(text)))


def read_env_file(path: str, environ: Mapping[str, str]) -> tuple[dict[str, str], dict[str, int]]:
    """A .env file's values and the line of each key; SettingsError for any line that would silently change a setting."""
    # python-dotenv skips a line it cannot parse, lets the last of two lines win, reads a bare KEY as unset and an
    # unknown ${NAME} as "": each of those could start the server without authentication. Values are never shown.
    values: dict[str, str] = {}
    lines: dict[str, int] = {}
    for binding in _bindings(path):
        line = _line(binding)
        where = f"{path}, line {line}"
        if binding.error:
            raise SettingsError(f"{where}: not understood as KEY=value (an unterminated quote?); fix or remove the line")
        key = binding.key
        if key is None:  # a comment or blank lines
            continue
        if key in lines:
            raise SettingsError(f"{where}: {key} is set a second time (first on line {lines[key]}); the last would "
                                "win without a word: keep one")
        if binding.value is None:
            raise SettingsError(f"{where}: {key} has no '=': write {key}=value, or remove the line")
        lines[key] = line
        values[key] = _resolve(where, key, binding, values, environ)
        if key in SECRET_KEYS and key not in environ and not values[key].strip():
            raise SettingsError(f"{where}: {key} is empty: write the key, or remove the line (or comment it out) "
                                "to serve without authentication")
    return values, lines


def _typo_of(key: str) -> str | None:
    """The known key that key most likely misspells (in any case), or None."""
    known = known_keys() + STACK_KEYS
    if key.upper() in known:
        return key.upper()
    matches = difflib.get_close_matches(key.upper(), known, n=1, cutoff=TYPO_CUTOFF)
    return matches[0] if matches else None


def check_keys(path: str, lines: Mapping[str, int], environ: Mapping[str, str], keyed: bool) -> list[str]:
    """Warnings for keys nobody reads; SettingsError for a .env key, or a misspelt API key, that looks like a typo."""
    warnings = []
    known = known_keys() + STACK_KEYS
    for key, line in lines.items():
        if key in known:
            continue
        typo = _typo_of(key)
        if typo:
            case = " (keys are upper case)" if key.upper() == typo else ""
            raise SettingsError(f"{path}, line {line}: {key} is not a setting: did you mean {typo}?{case} "
                                "docs/configuration.md lists the settings")
        if not key.startswith(STACK_PREFIXES):
            warnings.append(f"{path}, line {line}: {key} is not a setting of this server or its compose stack: ignored")
    # The environment holds every program's variables: only near misses of a known key are worth a word.
    for key in environ:
        typo = None if key in known else _typo_of(key)
        if typo in SECRET_KEYS and not keyed:
            raise SettingsError(f"the environment sets {key}, not {typo}: authentication would be off; "
                                f"rename it {typo} (or unset it)")
        if typo:
            warnings.append(f"the environment variable {key} is not a setting: did you mean {typo}? (ignored)")
    return warnings


def check_not_blanked(path: str, values: Mapping[str, str], environ: Mapping[str, str]) -> None:
    """SettingsError when an empty environment variable would hide an API key that the .env file sets."""
    for key in SECRET_KEYS:
        if key in environ and not environ[key].strip() and values.get(key, "").strip():
            raise SettingsError(f"{key} is empty in the environment, which wins over {path}, where {key} is set: "
                                f"the server would run without authentication; unset {key} or give it the key")


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


def env_file() -> str:
    """The .env file to read: ENV_FILE if set (it must exist), else the nearest .env from the working directory."""
    path = os.environ.get("ENV_FILE", "").strip()
    if path and not os.path.isfile(path):
        raise SettingsError(f"ENV_FILE={path!r} is not a file")
    return path or find_dotenv(usecwd=True)


@dataclass(frozen=True)
class Loaded:
    """Settings, what start-up should warn about, and the values the .env file holds."""

    settings: Settings
    warnings: tuple[str, ...]
    from_file: dict[str, str]


def load_settings(environ: Mapping[str, str], path: str) -> Loaded:
    """Settings from environ, with the .env file at path (if any) filling in what environ does not set."""
    from_file, lines = read_env_file(path, environ) if path else ({}, {})
    check_not_blanked(path, from_file, environ)
    merged = {**from_file, **environ}
    warnings = check_keys(path, lines, environ, keyed=any(merged.get(key, "").strip() for key in SECRET_KEYS))
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
