"""The OpenAI embeddings contract as pydantic models (parsing.py turns a raw body into one), and the error body."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictInt,
    StrictStr,
    TypeAdapter,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from embedding_app.inference.inputs import Inputs

INPUT_KINDS = "a string, an array of strings, an array of token ids, or an array of arrays of token ids"
_DOCUMENT_PROMPTS = ("document", "passage", "corpus")
# /v1/embeddings' input_type -> the prompt names it looks for, first found wins (e5 calls its document prompt
# "passage"). None found: no prompt, not the default one, as sentence-transformers' encode_query / encode_document do.
OPENAI_INPUT_TYPES = {"query": ("query",), "document": _DOCUMENT_PROMPTS, "passage": _DOCUMENT_PROMPTS}
# Every input_type the service takes: Cohere's (rag_schemas.COHERE_INPUT_TYPES) also name these two tasks.
INPUT_TYPE_PROMPTS = {**OPENAI_INPUT_TYPES, "classification": ("classification",), "clustering": ("clustering",)}


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


def check_text(text: str, param: str) -> None:
    """Reject an empty text or one no tokenizer can encode, naming param."""
    if not text:
        raise _invalid(param, f"'{param}' must not be an empty string")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # JSON can escape a lone surrogate that no tokenizer can encode
        raise _invalid(param, f"'{param}' is not valid Unicode: it has an unpaired surrogate "
                              "(\\ud800-\\udfff)") from None


def parse_input(value: Any) -> Inputs:
    """Parse `input` into Inputs, with messages that name the offending element, e.g. input[3]."""
    if isinstance(value, str):
        check_text(value, "input")
        return Inputs("texts", [value], single=True)
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
            check_text(item, f"input[{i}]")
        if first == "array":
            _check_token_ids(item, f"input[{i}]")
    if first == "token id":
        return Inputs("ids", [value], single=True)
    return Inputs("texts" if first == "string" else "ids", value, single=False)


# The input as JSON Schema describes it; parse_input does the validating (rejecting empty strings and arrays
# first, with a precise param), so this union only documents the accepted shapes and bounds.
Text = Annotated[StrictStr, Field(min_length=1)]
TokenIds = Annotated[list[StrictInt], Field(min_length=1)]
INPUT_SCHEMA = TypeAdapter(
    Text | Annotated[list[Text], Field(min_length=1)] | TokenIds | Annotated[list[TokenIds], Field(min_length=1)]
).json_schema()
EmbeddingInput = Annotated[
    Inputs,
    PlainValidator(parse_input),
    WithJsonSchema({**INPUT_SCHEMA, "description": f"What to embed: {INPUT_KINDS}.",
                    "examples": ["The food was delicious."]}),
]


class EmbeddingRequest(BaseModel):
    """Body of POST /v1/embeddings."""

    model_config = ConfigDict(extra="forbid")

    input: EmbeddingInput
    model: StrictStr | None = Field(None, description=(
        "A served model id (see GET /v1/models), a Hub id or an alias it answers to; omitted: the first model."))
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="float: arrays of numbers; base64: little-endian float32 bytes.")
    dimensions: StrictInt | None = Field(None, ge=1, description="Keep the first N dimensions, then renormalise.")
    user: StrictStr | None = Field(None, description="Accepted for compatibility and ignored.")
    input_type: Literal[tuple(OPENAI_INPUT_TYPES)] | None = Field(None, description=(
        "Extension: apply the model's `query` or `document` prompt (`passage` where the model names it so) "
        "to text inputs. Not with `prompt_name`."))
    prompt_name: StrictStr | None = Field(None, description=(
        "Extension (as in TEI): apply the model's prompt of this name to text inputs. Not with `input_type`."))


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


class ErrorDetail(BaseModel):
    """What went wrong, in OpenAI's shape."""

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """Body of every error response."""

    error: ErrorDetail
