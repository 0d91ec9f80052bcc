"""Load a model for serving: tokenizer and fp32 weights, then the mode and kernels measured fastest on this CPU."""

from __future__ import annotations

import copy
import logging
import time

import torch
from transformers import AutoModel, AutoTokenizer

from . import metrics
from .choice_cache import ChoiceCache, cache_key
from .embedder import Embedder, ModelInfo
from .kernel_choice import (
    PROBE_TEXTS,
    Choice,
    choose_kernels,
    measure_modes,
    pick,
    use_kernels,
)
from .model_source import ModelSource
from .modes import UNFAITHFUL_MODES
from .quantize import apply_mode, candidates
from .settings import Settings

log = logging.getLogger(__name__)


def _max_tokens(source: ModelSource, tokenizer, config, cap: int = 0) -> int:
    """The input length: sentence-transformers' max_seq_length, else the tokenizer's, capped by positions and cap."""
    limit = source.max_seq_length or tokenizer.model_max_length
    positions = getattr(config, "max_position_embeddings", None)
    if positions and (not limit or limit > positions):
        limit = positions
    limit = int(limit or 512)
    return min(limit, cap) if cap else limit


class EmbedderBuilder:
    """Makes Embedders of one loaded fp32 model in any mode (each mode converts its own copy)."""

    def __init__(self, source: ModelSource, settings: Settings, tokenizer, model, copies: bool):
        self.source, self.settings, self.tokenizer, self.model, self.copies = source, settings, tokenizer, model, copies

    def __call__(self, mode: str) -> Embedder:
        model = apply_mode(copy.deepcopy(self.model) if self.copies else self.model, mode)
        settings, source = self.settings, self.source
        info = ModelInfo(
            id=source.served_name,
            dimensions=int(model.config.hidden_size),
            max_tokens=_max_tokens(source, self.tokenizer, model.config, settings.max_tokens_per_input),
            vocab_size=int(model.get_input_embeddings().num_embeddings),
            pooling=settings.pool_type or source.pooling or "mean",
            mode=mode,
        )
        embedder = Embedder(model, self.tokenizer, info, settings.normalize, settings.batch_tokens)
        if embedder.room < 1:
            raise ValueError(f"MAX_TOKENS_PER_INPUT={settings.max_tokens_per_input} leaves no room for text: the model "
                             f"adds {info.max_tokens - embedder.room} special tokens to every input")
        return embedder


def _probe(embedder: Embedder) -> list[list[int]]:
    """The probe texts as this model's finished token sequences (truncated to its maximum)."""
    return embedder.finish(embedder.tokenize(PROBE_TEXTS), truncate=True)


def _measure(build: EmbedderBuilder, modes: tuple[str, ...], forced: str | None) -> tuple[Embedder, Choice]:
    """Build every candidate mode, choose each one's kernels, time them on the probe and keep the winner."""
    embedders = {mode: build(mode) for mode in modes}
    probe = _probe(next(iter(embedders.values())))
    rows = sum(len(ids) for ids in probe)
    kernels = {mode: choose_kernels(embedder.linears(), rows) for mode, embedder in embedders.items()}
    speeds, fidelity = measure_modes(embedders, probe) if len(modes) > 1 else ({}, {})
    mode = pick(speeds, fidelity, forced) if speeds else modes[0]
    return embedders[mode], Choice(mode, kernels[mode], speeds, fidelity)


def read_model(source: ModelSource, settings: Settings) -> tuple:
    """The tokenizer and the fp32 model of a resolved directory."""
    options = {"token": settings.hf_token, "trust_remote_code": settings.trust_remote_code}
    tokenizer = AutoTokenizer.from_pretrained(source.path, **options)
    return tokenizer, AutoModel.from_pretrained(source.path, dtype=torch.float32, **options).eval()


def load_embedder(source: ModelSource, settings: Settings, quantize: str = "fp32") -> Embedder:
    """Load a model from a resolved directory in the mode a QUANTIZE value asks for (true: measured fastest)."""
    started = time.perf_counter()
    tokenizer, model = read_model(source, settings)
    modes, forced = candidates(quantize)
    cache = ChoiceCache(settings.kernel_cache_dir)
    with cache.locked():
        key = cache_key(quantize, str(source.path), model.config.to_dict(), settings.batch_tokens)
        choice = cache.get(key)
        if choice is not None and choice.mode in modes:
            embedder = EmbedderBuilder(source, settings, tokenizer, model, copies=False)(choice.mode)
            use_kernels(embedder.linears(), choice.kernels)
        else:
            embedder, choice = _measure(EmbedderBuilder(source, settings, tokenizer, model, len(modes) > 1), modes, forced)
            cache.put(key, choice)
        embedder.embed([embedder.tokenize(["warm up"])[0]])  # first forward pays one-off kernel set-up
    embedder.choice = choice
    metrics.record_choice(source.served_name, choice.mode, choice.kernels, choice.tokens_per_second)
    _log_choice(embedder, source, quantize, time.perf_counter() - started)
    return embedder


def _log_choice(embedder: Embedder, source: ModelSource, quantize: str, seconds: float) -> None:
    info, choice = embedder.info, embedder.choice
    log.info("loaded %s from %s in %.1fs: QUANTIZE=%s -> %s (%s); pooling=%s, max_tokens=%d, %s", info.id,
             source.path, seconds, quantize, info.mode, choice.summary(), info.pooling,
             info.max_tokens, embedder.describe_path())
    if info.mode in UNFAITHFUL_MODES:
        log.warning("QUANTIZE=%s is not faithful: vectors differ from fp32 (probe min cosine %.4f; BENCHMARKS.md)",
                    info.mode, choice.min_cosine.get(info.mode, float("nan")))
    speeds = choice.tokens_per_second
    if "fp32" in speeds and speeds.get(info.mode, 0) < speeds["fp32"]:
        log.warning("QUANTIZE=%s runs at %.2fx the speed of fp32 on this CPU (measured at load): QUANTIZE=true picks "
                    "the fastest faithful mode", quantize, speeds[info.mode] / speeds["fp32"])
