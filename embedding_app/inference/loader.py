"""Load a model for serving: tokenizer and fp32 weights, then the mode and kernels measured fastest on this CPU."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable

import numpy as np
import torch
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from embedding_app.config.choices import UNFAITHFUL_MODES
from embedding_app.config.settings import Settings

from .choice_cache import ChoiceCache, cache_key, weights_stamp
from .embedder import Embedder
from .encoder import Encoder, ModelInfo
from .kernel_choice import (
    PROBE_COPIES,
    PROBE_TEXTS,
    Choice,
    choose_kernels,
    measure_modes,
    pick,
    use_kernels,
)
from .model_source import ModelSource, ModelSourceError
from .quantize import apply_mode, candidates
from .reranker import Reranker

log = logging.getLogger(__name__)
# Models that number positions from padding_idx + 1 (fairseq's convention): 514 positions hold 512 tokens.
POSITIONS_AFTER_PADDING = ("roberta", "xlm-roberta", "camembert", "longformer", "data2vec-text", "xmod")


def _max_tokens(source: ModelSource, tokenizer, config, cap: int = 0) -> int:
    """The input length: sentence-transformers' max_seq_length, else the tokenizer's, capped by positions and cap."""
    limit = source.max_seq_length or tokenizer.model_max_length
    positions = getattr(config, "max_position_embeddings", None)
    if positions and config.model_type in POSITIONS_AFTER_PADDING:  # their first position id is pad_token_id + 1
        positions -= (config.pad_token_id or 0) + 1
    if positions and (not limit or limit > positions):
        limit = positions
    limit = int(limit or 512)
    return min(limit, cap) if cap else limit


def read_model(source: ModelSource, settings: Settings) -> tuple:
    """The tokenizer and the fp32 model of a resolved directory (a sequence classifier for a reranker)."""
    options = {"token": settings.hf_token, "trust_remote_code": settings.trust_remote_code}
    tokenizer = AutoTokenizer.from_pretrained(source.path, **options)
    auto_class = AutoModelForSequenceClassification if source.task == "rerank" else AutoModel
    model, loading = auto_class.from_pretrained(source.path, dtype=torch.float32, output_loading_info=True, **options)
    # A head transformers had to initialise at random (an embedding model served as a reranker) scores noise.
    if source.task == "rerank" and loading["missing_keys"]:
        missing = ", ".join(sorted(loading["missing_keys"])[:4])
        raise ModelSourceError(f"{source.path} lacks trained weights for {type(model).__name__} ({missing}): "
                               "it is not a cross-encoder; serve it without the rerank: marker")
    if source.task == "rerank" and model.config.num_labels != 1:
        raise ValueError(f"{source.served_name} has {model.config.num_labels} labels: a reranker has one score")
    return tokenizer, model.eval()


class EngineBuilder:
    """Makes Embedders (or Rerankers) of one loaded fp32 model in any mode (each mode converts its own copy)."""

    def __init__(self, source: ModelSource, settings: Settings, tokenizer, model, copies: bool):
        self.source, self.settings, self.tokenizer, self.model, self.copies = source, settings, tokenizer, model, copies

    def __call__(self, mode: str, outliers: dict[str, list[int]] | None = None) -> Encoder:
        model = apply_mode(copy.deepcopy(self.model) if self.copies else self.model, mode, self.tokenizer, outliers)
        settings, source, rerank = self.settings, self.source, self.source.task == "rerank"
        info = ModelInfo(
            id=source.served_name,
            dimensions=0 if rerank else int(model.config.hidden_size),  # a reranker answers scores, not vectors
            max_tokens=_max_tokens(source, self.tokenizer, model.config, settings.max_tokens_per_input),
            vocab_size=int(model.get_input_embeddings().num_embeddings),
            pooling="" if rerank else settings.pool_type or source.pooling or "mean",
            mode=mode,
            task=source.task,
        )
        if rerank:
            engine = Reranker(model, self.tokenizer, info, settings.batch_tokens)
        else:
            engine = Embedder(model, self.tokenizer, info, settings.normalize, settings.batch_tokens)
        if engine.max_text_tokens < (2 if rerank else 1):
            raise ValueError(f"MAX_TOKENS_PER_INPUT={settings.max_tokens_per_input} leaves no room for text: the model "
                             f"adds {info.max_tokens - engine.max_text_tokens} special tokens to every input")
        return engine


def probe(engine: Encoder, traffic: bool = True) -> tuple[Callable[[], np.ndarray], int]:
    """A call running the probe texts as traffic comes (else once, one batch: a warm-up), and the tokens it computes."""
    texts = engine.tokenize(PROBE_TEXTS)
    if isinstance(engine, Reranker):
        pairs = [engine.pairs(text, [texts[(i + 1) % len(texts)]], truncate=True)[0][0] for i, text in enumerate(texts)]
        return (lambda: engine.score(pairs)), sum(len(ids) for ids, _ in pairs)
    sequences = engine.add_special_tokens(texts, truncate=True)[0]
    batch = sequences * (PROBE_COPIES if traffic else 1)

    def run() -> np.ndarray:
        for sequence in sequences if traffic else ():  # queries: a new row count per call, kernels built again
            engine.embed([sequence])
        return engine.embed(batch)
    return run, sum(map(len, batch)) + (sum(map(len, sequences)) if traffic else 0)


def _measure(build: EngineBuilder, modes: tuple[str, ...], forced: str | None) -> tuple[Encoder, Choice]:
    """Build every candidate mode, choose each one's kernels, time them on the probe and keep the winner."""
    engines = {mode: build(mode) for mode in modes}
    runs = {mode: probe(engine) for mode, engine in engines.items()}
    batches = {mode: probe(engine, traffic=False) for mode, engine in engines.items()}  # lighter: for fidelity
    tokens, rows = next(iter(runs.values()))[1], next(iter(batches.values()))[1]
    kernels = {mode: choose_kernels(engine.linears(), rows) for mode, engine in engines.items()}
    checks = {mode: check for mode, (check, _) in batches.items()}
    if len(modes) > 1:
        timed = measure_modes({mode: run for mode, (run, _) in runs.items()}, tokens, checks)
    else:
        timed = {}, {}
        checks[modes[0]]()  # the first forward pays one-off kernel set-up
    mode = pick(*timed, forced) if timed[0] else modes[0]
    return engines[mode], Choice(mode, kernels[mode], *timed, threads=torch.get_num_threads(),
                                 outliers=getattr(engines[mode].model, "int8_outlier_columns", {}))


def _usable(choice: Choice | None, modes: tuple[str, ...]) -> Choice | None:
    """A cached choice this QUANTIZE value may run, else None."""
    return choice if choice is not None and choice.mode in modes else None


def load_engine(source: ModelSource, settings: Settings, quantize: str) -> Encoder:
    """An Embedder (a Reranker for a cross-encoder) of a model directory in the mode QUANTIZE asks for, as engine.choice."""
    # QUANTIZE=true: the fastest faithful mode, probed at the current torch threads (or read from the cache).
    started = time.perf_counter()
    tokenizer, model = read_model(source, settings)
    modes, forced = candidates(quantize)
    cache, engine = ChoiceCache(settings.kernel_cache_dir), None
    key = cache_key(quantize, str(source.path), weights_stamp(source.path), source.task, model.config.to_dict(),
                    settings.batch_tokens)
    # Read without the lock first (the file is replaced whole): workers that start with a cached choice build at
    # the same time instead of in turn.
    choice = _usable(cache.get(key), modes)
    if choice is None:
        with cache.locked():
            choice = _usable(cache.get(key), modes)  # another worker may have probed while this one waited
            if choice is None:
                engine, choice = _measure(EngineBuilder(source, settings, tokenizer, model, len(modes) > 1), modes,
                                          forced)
                cache.put(key, choice)
    if engine is None:
        engine = EngineBuilder(source, settings, tokenizer, model, copies=False)(choice.mode, choice.outliers)
        use_kernels(engine.linears(), choice.kernels)
        probe(engine, traffic=False)[0]()  # the first forward pays one-off kernel set-up
    engine.choice = choice
    _log_choice(engine, source, quantize, time.perf_counter() - started)
    return engine


def _log_choice(engine: Encoder, source: ModelSource, quantize: str, seconds: float) -> None:
    info, choice = engine.info, engine.choice
    what = "reranker" if info.task == "rerank" else f"pooling={info.pooling}"
    log.info("loaded %s from %s in %.1fs: QUANTIZE=%s -> %s (%s); %s, max_tokens=%d, %s", info.id, source.path,
             seconds, quantize, info.mode, choice.summary(), what, info.max_tokens, engine.describe_path())
    if info.mode in UNFAITHFUL_MODES:
        log.warning("QUANTIZE=%s is not faithful: outputs differ from fp32 (probe agreement %.4f; BENCHMARKS.md)",
                    info.mode, choice.min_cosine.get(info.mode, float("nan")))
    speeds = choice.tokens_per_second
    if "fp32" in speeds and speeds.get(info.mode, 0) < speeds["fp32"]:
        log.warning("QUANTIZE=%s runs at %.2fx the speed of fp32 on this CPU (measured at load): QUANTIZE=true picks "
                    "the fastest faithful mode", quantize, speeds[info.mode] / speeds["fp32"])
