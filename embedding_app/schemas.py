"""The OpenAI embeddings contract as pydantic models (parsing.py turns a raw body into one)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr
from pydantic_core import PydanticCustomError


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
