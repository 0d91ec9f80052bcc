"""Sequence packing chunks and padded batches (inference/batching.py) and pack()'s layout, without a model."""

import numpy as np
import pytest

from embedding_app.inference.batching import (
    MAX_BATCH_SIZE,
    packed_chunks,
    padded_batches,
)
from embedding_app.inference.packed_bert import pack

BUDGET = 512


def random_lengths(seed: int, count: int = 300, longest: int = 600) -> list[int]:
    """Length-descending token counts, as the embedder sorts them, some longer than BUDGET."""
    rng = np.random.default_rng(seed)
    return sorted(rng.integers(1, longest, count).tolist(), reverse=True)


def flattened(ranges: list[tuple[int, int]]) -> list[int]:
    return [index for first, end in ranges for index in range(first, end)]


@pytest.mark.parametrize("seed", range(5))
def test_packed_chunks_keep_order_and_hold_every_input_once(seed):
    lengths = random_lengths(seed)
    assert flattened(packed_chunks(lengths, BUDGET)) == list(range(len(lengths)))


@pytest.mark.parametrize("seed", range(5))
def test_packed_chunks_never_exceed_the_token_budget_unless_one_input_does(seed):
    lengths = random_lengths(seed)
    for first, end in packed_chunks(lengths, BUDGET):
        assert sum(lengths[first:end]) <= BUDGET or end - first == 1


def test_packed_chunks_fill_each_chunk_before_starting_the_next():
    lengths = random_lengths(7)
    chunks = packed_chunks(lengths, BUDGET)
    for first, end in chunks[:-1]:
        assert sum(lengths[first:end + 1]) > BUDGET  # the next input would not have fitted


def test_a_single_input_longer_than_the_budget_is_a_chunk_of_its_own():
    assert packed_chunks([100, 900, 100, 100], BUDGET) == [(0, 1), (1, 2), (2, 4)]
    assert packed_chunks([900], BUDGET) == [(0, 1)]


def test_packed_chunks_of_no_input_are_none():
    assert packed_chunks([], BUDGET) == []


def test_inputs_that_fit_share_one_chunk():
    assert packed_chunks([200, 200, 112], BUDGET) == [(0, 3)]


@pytest.mark.parametrize("seed", range(3))
def test_padded_batches_keep_order_budget_and_batch_size(seed):
    lengths = random_lengths(seed, count=400)
    batches = padded_batches(lengths, BUDGET * 8)
    assert flattened(batches) == list(range(len(lengths)))
    for first, end in batches:
        assert (end - first) * lengths[first] <= BUDGET * 8 or end - first == 1
        assert end - first <= MAX_BATCH_SIZE


def test_padded_batches_cap_the_batch_size_for_equal_short_inputs():
    batches = padded_batches([4] * (MAX_BATCH_SIZE * 2 + 1), 1 << 20)
    assert [end - first for first, end in batches] == [MAX_BATCH_SIZE, MAX_BATCH_SIZE, 1]


def test_padded_batches_of_no_input_are_none():
    assert padded_batches([], BUDGET) == []


def test_pack_lays_sequences_end_to_end_with_positions_from_zero():
    ids, positions, packing = pack([[5, 6, 7], [8, 9], [1, 2]])
    assert ids.tolist() == [5, 6, 7, 8, 9, 1, 2]
    assert positions.tolist() == [0, 1, 2, 0, 1, 0, 1]
    assert packing.offsets == [0, 3, 5, 7] and packing.lengths.tolist() == [3, 2, 2]
    assert packing.groups == [(0, 1), (1, 3)]  # equal lengths share one attention call


def test_pack_of_one_sequence_is_one_group():
    ids, positions, packing = pack([[3] * 9])
    assert len(ids) == 9 and positions.tolist() == list(range(9))
    assert packing.groups == [(0, 1)] and packing.offsets == [0, 9]
