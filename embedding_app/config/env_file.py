"""Reading and checking the .env file: one binding a key, ${NAME} resolved as compose would, nothing dropped silently."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping

from dotenv import find_dotenv
from dotenv.parser import Binding, parse_stream
from dotenv.variables import Variable, parse_variables

from .keys import SECRET_KEYS
from .values import SettingsError


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


def env_file() -> str:
    """The .env file to read: ENV_FILE if set (it must exist), else the nearest .env from the working directory."""
    path = os.environ.get("ENV_FILE", "").strip()
    if path and not os.path.isfile(path):
        raise SettingsError(f"ENV_FILE={path!r} is not a file")
    return path or find_dotenv(usecwd=True)
