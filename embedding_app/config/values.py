"""Parsers of one environment value each: integers, booleans, choices, lists, origins, thread counts, directories."""

from __future__ import annotations

import re

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
# One origin: scheme://host[:port], where the host may start with "*." (any subdomain); no path, no trailing slash.
_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://(\*\.)?([a-z0-9-]+(\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(:[0-9]{1,5})?",
                     re.IGNORECASE)


class SettingsError(ValueError):
    """A setting has a value the server cannot start with."""


def read_text(env: dict[str, str], key: str, default: str) -> str:
    """A stripped string, or default when unset or blank."""
    return env.get(key, "").strip() or default


def read_int(env: dict[str, str], key: str, default: int, minimum: int = 1, maximum: int = 1 << 40) -> int:
    """An integer within minimum..maximum, or default when unset."""
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


def read_threads(env: dict[str, str], key: str, default: int | None) -> int | None:
    """A thread count, or `auto` (None)."""
    if env.get(key, "").strip().lower() == "auto":
        return None
    try:
        return read_int(env, key, default, maximum=256)
    except SettingsError as exc:
        raise SettingsError(f"{exc}; or auto (the cores, shared by the busy workers)") from None


def read_bool(env: dict[str, str], key: str, default: bool) -> bool:
    """true/false in the usual spellings (1, yes, on...); any other value is an error, never truthy."""
    raw = env.get(key, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingsError(f"{key}={raw!r} is not one of: {', '.join(_TRUE + _FALSE)}")


def read_choice(env: dict[str, str], key: str, default: str, allowed: tuple[str, ...]) -> str:
    """One of allowed (case-insensitive), or default when unset."""
    raw = env.get(key, "").strip().lower()
    if not raw:
        return default
    if raw not in allowed:
        raise SettingsError(f"{key}={raw!r} is not one of: {', '.join(allowed)}")
    return raw


def read_list(env: dict[str, str], key: str) -> tuple[str, ...]:
    """Comma-separated items, blanks dropped."""
    return tuple(item.strip() for item in env.get(key, "").split(",") if item.strip())


def read_origins(env: dict[str, str], key: str) -> tuple[str, ...]:
    """Browser origins, each checked: flask-cors would read a malformed one (with *, ? or $) as a regular expression."""
    origins = read_list(env, key)
    for origin in origins:
        if origin != "*" and not _ORIGIN.fullmatch(origin):
            raise SettingsError(f"{key} item {origin!r} is not an origin: allowed scheme://host[:port] "
                                "(no path, no trailing slash), scheme://*.domain[:port] for every subdomain "
                                "of domain, or *")
    return origins


def read_cache_dir(env: dict[str, str], key: str, default: str) -> str:
    """A directory, or off (empty string) to keep nothing."""
    raw = env.get(key, "").strip()
    return "" if raw.lower() == "off" else raw or default
