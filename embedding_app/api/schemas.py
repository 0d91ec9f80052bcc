"""The OpenAI embeddings contract as pydantic models (parsing.py turns a raw body into one)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

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
    Union[Text, Annotated[list[Text], Field(min_length=1)], TokenIds, Annotated[list[TokenIds], Field(min_length=1)]]
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
    input_type: Literal["query", "document", "passage"] | None = Field(None, description=(
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


class ProbeResult(BaseModel):
    """One mode as the load-time probe measured it on this CPU."""

    tokens_per_second: float
    min_cosine: float = Field(description="Lowest cosine similarity of the probe's vectors to fp32's")


class Compute(BaseModel):
    """How this CPU runs the model: the mode and kernels the workers measured fastest at load."""

    mode: str = Field(description="fp32, bf16 or an int8 mode (QUANTIZE=true: the fastest faithful one here)")
    kernels: dict[str, str] = Field(description="Matrix multiplication shape -> kernel (onednn or F.linear)")
    probe: dict[str, ProbeResult] = Field(description="Each timed mode's probe figures (empty: one mode, untimed)")
    cached: bool = Field(description="The figures come from an earlier start's probe (KERNEL_CACHE_DIR)")

    @classmethod
    def of(cls, choice) -> Compute | None:
        """From the loader's kernel_choice.Choice (None for a model loaded without one)."""
        if choice is None:
            return None
        probe = {mode: ProbeResult(tokens_per_second=round(speed, 1), min_cosine=choice.min_cosine.get(mode, 1.0))
                 for mode, speed in choice.tokens_per_second.items()}
        return cls(mode=choice.mode, kernels=choice.kernels, probe=probe, cached=choice.cached)


class ModelCard(BaseModel):
    """One model, as GET /v1/models lists it."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    compute: Compute | None = Field(None, description="Extension: the mode and kernels chosen on this CPU")
    capabilities: list[Literal["embed", "rerank"]] = Field(description=(
        "Extension: what the model answers: embed (/v1/embeddings, /v2/embed, /embed) or rerank (/v1/rerank, "
        "/v2/rerank, /rerank)."))


class ModelList(BaseModel):
    """Body of GET /v1/models."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class ModelHealth(BaseModel):
    """One served model, as GET /health reports it."""

    id: str
    aliases: list[str]
    mode: str
    capabilities: list[Literal["embed", "rerank"]]
    dimensions: int | None  # None for a reranker
    max_tokens: int
    prompts: list[str]
    default_prompt_name: str | None
    compute: Compute | None


class Health(BaseModel):
    """Body of GET /health: model and mode are the first model's, models lists every one."""

    status: Literal["ok"]
    model: str
    mode: str
    models: list[ModelHealth]


class ServerInfo(BaseModel):
    """Body of GET /: what this server is and where to go next (model and dimensions: the first model's)."""

    name: str
    model: str
    dimensions: int | None  # None when the first model is a reranker
    models: list[str]
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
