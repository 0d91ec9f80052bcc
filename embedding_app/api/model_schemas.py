"""What is served and how it runs, as pydantic models: the bodies of GET /v1/models, GET /health and GET /."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ProbeResult(BaseModel):
    """One mode as the load-time probe measured it on this CPU."""

    tokens_per_second: float
    min_cosine: float = Field(description="Lowest cosine similarity of the probe's vectors to fp32's")


class Compute(BaseModel):
    """How this CPU runs the model: the mode and kernels the workers measured fastest at load."""

    mode: str = Field(description="fp32, bf16 or an int8 mode (QUANTIZE=true: the fastest faithful one here)")
    kernels: dict[str, str] = Field(description="Matrix multiplication shape -> kernel: onednn, onednn then gelu "
                                                "(GELU as a pass of its own) or F.linear where timed, else what the "
                                                "layer runs (int8)")
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
