"""API keys, the keys a .env file may hold (and their typos), and the warning for an API open to the network."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping

from .values import SettingsError, read_list

# The keys that turn authentication on: empty, blanked or misspelt, they would serve without it.
SECRET_KEYS = ("API_KEY", "API_KEY_FILE")
# Read by the compose stack, the proxy, gunicorn or libraries rather than here: welcome in .env without a word.
STACK_KEYS = ("ENV_FILE", "EMBEDDING_PUBLISH", "EMBEDDING_IMAGE", "LOCAL_MODEL_DIR", "PROXY_MAX_IN_FLIGHT",
              "PROXY_CLIENT_TIMEOUT", "PROXY_UPSTREAM", "PROXY_PORT", "FORWARDED_ALLOW_IPS", "GUNICORN_CMD_ARGS")
STACK_PREFIXES = ("COMPOSE_", "DOCKER_", "HF_", "OMP_", "GOMP_", "KMP_", "MKL_", "TORCH_")
# How alike (difflib ratio, upper-cased) an unknown key must be to a known one to count as its typo.
TYPO_CUTOFF = 0.85


def api_keys_from_env(env: dict[str, str]) -> tuple[str, ...]:
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
        return read_list(env, "API_KEY")
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


def _typo_of(key: str, known: tuple[str, ...]) -> str | None:
    """The known key that key most likely misspells (in any case), or None."""
    if key.upper() in known:
        return key.upper()
    matches = difflib.get_close_matches(key.upper(), known, n=1, cutoff=TYPO_CUTOFF)
    return matches[0] if matches else None


def check_keys(path: str, lines: Mapping[str, int], environ: Mapping[str, str], keyed: bool,
               settings_keys: tuple[str, ...]) -> list[str]:
    """Warnings for keys nobody reads; SettingsError for a .env key, or a misspelt API key, that looks like a typo."""
    warnings = []
    known = settings_keys + STACK_KEYS
    for key, line in lines.items():
        if key in known:
            continue
        typo = _typo_of(key, known)
        if typo:
            case = " (keys are upper case)" if key.upper() == typo else ""
            raise SettingsError(f"{path}, line {line}: {key} is not a setting: did you mean {typo}?{case} "
                                "docs/configuration.md lists the settings")
        if not key.startswith(STACK_PREFIXES):
            warnings.append(f"{path}, line {line}: {key} is not a setting of this server or its compose stack: ignored")
    # The environment holds every program's variables: only near misses of a known key are worth a word.
    for key in environ:
        typo = None if key in known else _typo_of(key, known)
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
