"""A raw request body to a validated EmbeddingRequest: strict JSON, then the schema, errors naming the param."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .errors import ApiError
from .schemas import EmbeddingRequest

T = TypeVar("T", bound=BaseModel)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        key = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ApiError(400, f"Invalid JSON body: key {key!r} appears more than once", param=key,
                       code="invalid_json")
    return data


def _reject_constant(name: str) -> None:
    raise ApiError(400, f"Invalid JSON body: {name} is not valid JSON", code="invalid_json")


def _parse_float(text: str) -> float | int:
    """JSON has one number type: 8.0 is the integer 8 (as JSON Schema says); 2.5 and 1e308 stay floats."""
    value = float(text)
    # Beyond 2**53 a float no longer stands for one exact integer, so it is not taken as one.
    return int(value) if value.is_integer() and abs(value) <= 2**53 else value


def _location(loc: tuple) -> str:
    param = str(loc[0]) if loc else ""
    return param + "".join(f"[{part}]" for part in loc[1:] if isinstance(part, int))


def _from_validation(exc: ValidationError) -> ApiError:
    error = exc.errors(include_url=False)[0]
    if error["type"] == "invalid_input":
        return ApiError(400, error["msg"], param=error["ctx"]["param"], code="invalid_input")
    param = _location(error["loc"])
    if error["type"] == "extra_forbidden":
        return ApiError(400, f"Unrecognized request argument supplied: {param}", param=param,
                        code="unknown_parameter")
    if error["type"] == "missing":
        return ApiError(400, f"Missing required parameter: '{param}'", param=param, code="missing_parameter")
    return ApiError(400, f"Invalid value for '{param}': {error['msg']}", param=param, code="invalid_value")


def parse_request(body: bytes) -> EmbeddingRequest:
    """Parse and validate a raw embeddings body, raising ApiError with the offending param."""
    return validate(parse_json(body), EmbeddingRequest)


def parse_json(body: bytes) -> dict:
    """A raw body as a JSON object (strict: no duplicate keys, NaN or Infinity), or ApiError invalid_json."""
    try:
        data = json.loads(body, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant,
                          parse_float=_parse_float)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ApiError(400, f"Invalid JSON body: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "The request body must be a JSON object", code="invalid_json")
    return data


def validate(data: dict, schema: type[T]) -> T:
    """A JSON object as a request model, or ApiError naming the offending param."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise _from_validation(exc) from None
