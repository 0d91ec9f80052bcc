"""The requests of the other APIs RAG stacks call, as pydantic models: rerank (Jina, Cohere, TEI), Cohere and TEI
embed, tokenize (TEI, vLLM), detokenize; their answers are in rag_responses.py."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
)

from .schemas import Text, check_text

# Cohere's input_type -> this server's (schemas.INPUT_TYPE_PROMPTS says which model prompts each one applies).
COHERE_INPUT_TYPES = {"search_query": "query", "search_document": "document", "classification": "classification",
                      "clustering": "clustering"}
EMBEDDING_TYPES = ("float", "int8", "uint8", "binary", "ubinary", "base64")


def _texts(param: str):
    """A validator that rejects empty and unencodable texts, naming the one at fault (e.g. documents[2])."""
    def check(value):
        if isinstance(value, str):
            check_text(value, param)
            return value
        texts = [item if isinstance(item, str) else item.text for item in value]
        for index, text in enumerate(texts):
            check_text(text, f"{param}[{index}]")
        return texts
    return AfterValidator(check)


class DocumentText(BaseModel):
    """A document given as an object, as Jina and Cohere v1 accept."""

    model_config = ConfigDict(extra="forbid")
    text: Text


Query = Annotated[Text, _texts("query")]
Model = Field(None, description="A served reranker or embedding model id or alias; omitted: the first that can.")
Strict = ConfigDict(extra="forbid")


class RerankRequest(BaseModel):
    """Body of POST /v1/rerank, /rerank (Jina, Cohere v1) and /v2/rerank (Cohere v2)."""

    model_config = Strict
    model: StrictStr | None = Model
    query: Query
    documents: Annotated[list[Text | DocumentText], Field(min_length=1), _texts("documents")]
    top_n: StrictInt | None = Field(None, ge=1, description="Return only the N best documents.")
    return_documents: StrictBool | None = Field(None, description="Include each document's text in its result.")
    max_tokens_per_doc: StrictInt | None = Field(None, ge=1, description="Cohere v2: cut documents to N tokens.")
    raw_scores: StrictBool = Field(False, description="Extension: logits, without the model's sigmoid.")
    priority: StrictInt | None = Field(None, description="Cohere v2: accepted and ignored.")


class TeiRerankRequest(BaseModel):
    """Body of POST /rerank in Hugging Face TEI's shape (told apart by `texts`)."""

    model_config = Strict
    model: StrictStr | None = Model
    query: Query
    texts: Annotated[list[Text], Field(min_length=1), _texts("texts")]
    raw_scores: StrictBool = False
    return_text: StrictBool = False
    truncate: StrictBool | None = None
    truncation_direction: Literal["Right", "Left"] = "Right"


class CohereEmbedRequest(BaseModel):
    """Body of POST /v2/embed and /v1/embed (Cohere)."""

    model_config = Strict
    model: StrictStr | None = Model
    texts: Annotated[list[Text], Field(min_length=1), _texts("texts")]
    input_type: Literal[tuple(COHERE_INPUT_TYPES)] | None = None
    embedding_types: Annotated[list[Literal[EMBEDDING_TYPES]], Field(min_length=1)] | None = None
    output_dimension: StrictInt | None = Field(None, ge=1)
    truncate: Literal["NONE", "START", "END"] | None = None
    max_tokens: StrictInt | None = Field(None, ge=1, description=(
        "Cut each text to N tokens (its end, or its start with truncate=START), whatever truncate says."))
    priority: StrictInt | None = Field(None, description="Accepted and ignored.")


class TeiEmbedRequest(BaseModel):
    """Body of POST /embed (TEI): the answer is a bare array of vectors."""

    model_config = Strict
    model: StrictStr | None = Model
    inputs: Annotated[Text, _texts("inputs")] | Annotated[list[Text], Field(min_length=1), _texts("inputs")]
    truncate: StrictBool | None = None
    truncation_direction: Literal["Right", "Left"] = "Right"
    normalize: StrictBool = True
    prompt_name: StrictStr | None = None
    dimensions: StrictInt | None = Field(None, ge=1)


class TeiTokenizeRequest(BaseModel):
    """Body of POST /tokenize in TEI's shape (answer: token objects with offsets)."""

    model_config = Strict
    model: StrictStr | None = Model
    inputs: StrictStr | Annotated[list[StrictStr], Field(min_length=1)]
    add_special_tokens: StrictBool = True
    prompt_name: StrictStr | None = None


class VllmTokenizeRequest(BaseModel):
    """Body of POST /tokenize in vLLM's shape, told apart by `prompt` (answer: ids and count)."""

    model_config = Strict
    model: StrictStr | None = Model
    prompt: StrictStr
    add_special_tokens: StrictBool = True
    prompt_name: StrictStr | None = None


class DetokenizeRequest(BaseModel):
    """Body of POST /detokenize (vLLM): token ids back to text."""

    model_config = Strict
    model: StrictStr | None = Model
    tokens: Annotated[list[StrictInt], Field(min_length=1)]


# The request bodies the OpenAPI document describes.
REQUESTS = (RerankRequest, TeiRerankRequest, CohereEmbedRequest, TeiEmbedRequest, TeiTokenizeRequest, VllmTokenizeRequest,
            DetokenizeRequest)
