"""Padding-free forward for BERT-family encoders: every Linear on all tokens at once, attention per length group.

A request's sequences are packed end to end into one [tokens, hidden] matrix, so the matrix multiplications
(about 90 % of the work) never see a padding token and run with a large M. Only attention needs sequences
apart: sequences of equal length share one SDPA call, and nothing is ever padded.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby

import torch
from torch import nn
from torch.nn import functional as F

from .int8_linear import Int8Linear
from .prepacked_linear import LinearLayer, PrepackedLinear, fastest_linear

GELU = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}  # hidden_act -> F.gelu approximate


def unsupported_reason(model: nn.Module) -> str | None:
    """Why model cannot take the packed path, or None when it can (a plain BERT encoder)."""
    config = model.config
    if config.model_type != "bert":
        return f"model_type {config.model_type!r} is not bert"
    if config.is_decoder or getattr(config, "add_cross_attention", False):
        return "decoder or cross-attention"
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        return f"position_embedding_type {config.position_embedding_type!r}"
    if config.hidden_act not in GELU:
        return f"hidden_act {config.hidden_act!r}"
    return None


@dataclass(frozen=True)
class Packing:
    """Where each sequence sits in the packed tokens, and how attention groups them."""

    lengths: torch.Tensor  # [sequences] int64
    offsets: list[int]  # [sequences + 1]: sequence i is rows offsets[i]:offsets[i + 1]
    groups: list[tuple[int, int]]  # [first, end) ranges of equal-length sequences: one attention call each


def pack(sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, Packing]:
    """Token ids and position ids of length-descending sequences, end to end, and their Packing."""
    lengths = [len(ids) for ids in sequences]
    offsets = [0]
    for length in lengths:
        offsets.append(offsets[-1] + length)
    ids = torch.tensor([token for ids in sequences for token in ids], dtype=torch.int64)
    positions = torch.cat([torch.arange(length) for length in lengths])
    # Equal lengths only: faster end to end than groups padded with a key mask (BENCHMARKS.md, "What was tried for
    # bf16 (and fp32) closer to the roofline"), because SDPA with a mask is far slower than more, smaller calls.
    groups, first = [], 0
    for _, run in groupby(lengths):
        end = first + len(list(run))
        groups.append((first, end))
        first = end
    return ids, positions, Packing(torch.tensor(lengths), offsets, groups)


class PackedBert:
    """Runs a loaded transformers BertModel on packed tokens, using its own modules and weights."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.heads = model.config.num_attention_heads
        self.approximate = GELU[model.config.hidden_act]
        self.layers = [_Layer(layer, self.approximate) for layer in model.encoder.layer]

    def _embed(self, ids: torch.Tensor, positions: torch.Tensor, types: torch.Tensor | None) -> torch.Tensor:
        embeddings = self.model.embeddings
        # token_type_ids are all 0 for a single text: one row of the table, broadcast. A pair (reranking) has
        # its own per token: 0 for the query, 1 for the document.
        token_types = embeddings.token_type_embeddings
        states = embeddings.word_embeddings(ids) + (token_types.weight[0] if types is None else token_types(types))
        states += embeddings.position_embeddings(positions)
        return embeddings.LayerNorm(states)

    def _attention(self, qkv: torch.Tensor, packing: Packing) -> torch.Tensor:
        hidden = qkv.shape[1] // 3
        width = hidden // self.heads
        out = torch.empty(qkv.shape[0], hidden, dtype=qkv.dtype)
        for first, end in packing.groups:
            start, stop = packing.offsets[first], packing.offsets[end]
            count, length = end - first, packing.offsets[first + 1] - start
            block = qkv[start:stop].view(count, length, 3, self.heads, width)
            q, k, v = block.permute(2, 0, 3, 1, 4).unbind(0)  # each [count, heads, length, width]
            attended = F.scaled_dot_product_attention(q, k, v)
            out[start:stop] = attended.transpose(1, 2).reshape(count * length, hidden)
        return out

    def forward(self, ids: torch.Tensor, positions: torch.Tensor, packing: Packing,
                types: torch.Tensor | None = None) -> torch.Tensor:
        """Last hidden states of the packed tokens, [tokens, hidden]; types: token type ids (None: all 0)."""
        states = self._embed(ids, positions, types)
        for layer in self.layers:
            attention = self._attention(layer.qkv(states), packing)
            states = layer.attention_norm(layer.attention_out(attention).add_(states))
            states = layer.output_norm(layer.down(layer.up(states)).add_(states))
        return states

    def prepacked_count(self) -> tuple[int, int]:
        """How many of the matrix multiplications run pre-packed oneDNN, of how many (for the load log line)."""
        parts = [part for layer in self.layers for part in layer.linears()]
        return sum(part.prepacked for part in parts), len(parts)


class _Layer:
    """One encoder layer's matrix multiplications (GELU fused into the up-projection) and layer norms."""

    def __init__(self, layer: nn.Module, approximate: str):
        self.qkv = _fuse_qkv(layer.attention.self)
        self.attention_out = _packed_path_layer(layer.attention.output.dense)
        self.attention_norm = layer.attention.output.LayerNorm
        self.up = _packed_path_layer(layer.intermediate.dense, gelu=approximate)
        self.down = _packed_path_layer(layer.output.dense)
        self.output_norm = layer.output.LayerNorm

    def linears(self) -> list[LinearLayer]:
        """The layers that may run pre-packed."""
        return [self.qkv, self.attention_out, self.up, self.down]


def _packed_path_layer(module: nn.Module, gelu: str | None = None):
    """module as a packed-path layer: int8 when QUANTIZE=int8 marked its outlier columns (int8_mode.py)."""
    if hasattr(module, "int8_outliers"):
        return Int8Linear(module.weight, module.bias, module.int8_outliers, gelu)
    return fastest_linear(module, gelu)


class _SeparateQKV(LinearLayer):
    """Query, key and value projections called one by one (quantized Linear modules cannot be fused)."""

    def __init__(self, attention: nn.Module):
        self.parts = (attention.query, attention.key, attention.value)

    def __call__(self, states: torch.Tensor) -> torch.Tensor:
        return torch.cat([part(states) for part in self.parts], dim=1)


def _fuse_qkv(attention: nn.Module):
    """One [3 * hidden, hidden] weight whose thirds become the query, key and value weights (no extra copy)."""
    parts = (attention.query, attention.key, attention.value)
    if not all(type(part) is nn.Linear and part.bias is not None for part in parts):
        return _SeparateQKV(attention)
    weight = torch.cat([part.weight.detach() for part in parts])
    bias = torch.cat([part.bias.detach() for part in parts])
    hidden = parts[0].weight.shape[0]
    for index, part in enumerate(parts):  # the HF modules keep working, on views of the fused tensors
        part.weight = nn.Parameter(weight[index * hidden:(index + 1) * hidden], requires_grad=False)
        part.bias = nn.Parameter(bias[index * hidden:(index + 1) * hidden], requires_grad=False)
    if hasattr(parts[0], "int8_outliers"):  # one input, so Q, K and V share their calibrated outlier columns
        return Int8Linear(weight, bias, parts[0].int8_outliers)
    return PrepackedLinear(weight, bias)
