"""The OpenAI embeddings contract as pydantic models, and parsing of a raw request body into them."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Union

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr,
                      ValidationError)
from pydantic_core import PydanticCustomError

from .errors import ApiError

INPUT_KINDS = "a string, an array of strings, an array of token ids, or an array of arrays of token ids"


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return "string"
    if type(value) is int:  # bool is an int subclass, and never a token id
        return "token id"
    if isinstance(value, list):
        return "array"
    return type(value).__name__ if value is not None else "null"


def _invalid(param: str, message: str) -> PydanticCustomError:
    return PydanticCustomError("invalid_input", message, {"param": param})


def _check_token_ids(ids: list, param: str) -> None:
    if not ids:
        raise _invalid(param, f"'{param}' must not be an empty array of token ids")
    for j, item in enumerate(ids):
        if type(item) is not int:
            raise _invalid(f"{param}[{j}]", f"'{param}[{j}]' must be a token id (integer), got {_kind(item)}")


def _check_text(text: str, param: str) -> None:
    if not text:
        raise _invalid(param, f"'{param}' must not be an empty string")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # JSON can escape a lone surrogate that no tokenizer can encode
        raise _invalid(param, f"'{param}' is not valid Unicode: it has an unpaired surrogate "
                              "(\\ud800-\\udfff)") from None


def check_input(value: Any) -> Any:
    """Validate `input` with messages that name the offending element, e.g. input[3]."""
    if isinstance(value, str):
        _check_text(value, "input")
        return value
    if not isinstance(value, list):
        raise _invalid("input", f"'input' must be {INPUT_KINDS}; got {_kind(value)}")
    if not value:
        raise _invalid("input", "'input' must not be an empty array")
    first = _kind(value[0])
    if first not in ("string", "token id", "array"):
        raise _invalid("input[0]", f"'input' must be {INPUT_KINDS}; input[0] is {first}")
    for i, item in enumerate(value):
        if _kind(item) != first:
            raise _invalid(f"input[{i}]", f"input[{i}] is {_kind(item)} but input[0] is {first}: "
                                          "all items of 'input' must be of one kind")
        if first == "string":
            _check_text(item, f"input[{i}]")
        if first == "array":
            _check_token_ids(item, f"input[{i}]")
    return value


# check_input rejects empty strings and arrays first with a precise param; these bounds put them in the OpenAPI doc.
Text = Annotated[StrictStr, Field(min_length=1)]
TokenIds = Annotated[list[StrictInt], Field(min_length=1)]
EmbeddingInput = Annotated[
    Union[Text, Annotated[list[Text], Field(min_length=1)], TokenIds, Annotated[list[TokenIds], Field(min_length=1)]],
    BeforeValidator(check_input),
    Field(description=f"What to embed: {INPUT_KINDS}.", examples=["The food was delicious."]),
]


class EmbeddingRequest(BaseModel):
    """Body of POST /v1/embeddings."""

    model_config = ConfigDict(extra="forbid")

    input: EmbeddingInput
    model: StrictStr | None = Field(None, description="The served model id (see GET /v1/models).")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="float: arrays of numbers; base64: little-endian float32 bytes.")
    dimensions: StrictInt | None = Field(None, ge=1, description="Keep the first N dimensions, then renormalise.")
    user: StrictStr | None = Field(None, description="Accepted for compatibility and ignored.")

    def is_single(self) -> bool:
        """True when input is one text or one token-id list, so errors name 'input' itself."""
        return isinstance(self.input, str) or isinstance(self.input[0], int)

    def texts_or_ids(self) -> tuple[list[str] | None, list[list[int]] | None]:
        """The input as a list of texts, or as a list of token-id lists (exactly one is set)."""
        value = self.input
        if isinstance(value, str):
            return [value], None
        if isinstance(value[0], str):
            return value, None
        if isinstance(value[0], int):
            return None, [value]
        return None, value


class Embedding(BaseModel):
    """One embedding in a response, at the index of its input."""

    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    """Tokens the model saw, special tokens included and padding excluded."""

    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    """Body of a successful POST /v1/embeddings."""

    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class ModelCard(BaseModel):
    """One model, as GET /v1/models lists it."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    """Body of GET /v1/models."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    """Body of GET /health."""

    status: Literal["ok"]
    model: str
    mode: str


class ServerInfo(BaseModel):
    """Body of GET /: what this server is and where to go next."""

    name: str
    model: str
    dimensions: int
    endpoints: list[str]
    docs: str


class ErrorDetail(BaseModel):
    """What went wrong, in OpenAI's shape."""

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """Body of every error response."""

    error: ErrorDetail


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
    """Parse and validate a raw JSON body, raising ApiError with the offending param."""
    try:
        data = json.loads(body, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant,
                          parse_float=_parse_float)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ApiError(400, f"Invalid JSON body: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "The request body must be a JSON object", code="invalid_json")
    try:
        return EmbeddingRequest.model_validate(data)
    except ValidationError as exc:
        raise _from_validation(exc) from None
