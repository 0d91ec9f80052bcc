"""The benchmark's building blocks that need no model: a fixed workload and the fidelity arithmetic."""

import numpy as np

from harness.quality import overlap, top_k
from harness.workload import REQUEST_SIZES, fresh_rounds, load_texts, make_requests


def test_workload_is_the_same_every_run():
    short, long = [f"short {i}" for i in range(50)], [f"long {i}" for i in range(20)]
    first = make_requests(short, long, 40)
    assert first == make_requests(short, long, 40)
    assert {len(request) for request in first} <= set(REQUEST_SIZES)
    assert any(text in long for request in first for text in request)


def test_top_k_overlap_counts_shared_neighbours():
    passages = np.eye(4, dtype=np.float32)
    queries = np.array([[1, 0.5, 0, 0]], dtype=np.float32)
    assert top_k(queries, passages, k=2).tolist() == [[0, 1]]
    assert overlap(np.array([[0, 1]]), np.array([[1, 2]])) == 0.5


def test_fresh_rounds_are_seeded_and_never_repeat_a_round():
    texts = load_texts()
    rounds = fresh_rounds(texts, rounds=3, requests=4, per_request=8)
    assert rounds == fresh_rounds(texts, rounds=3, requests=4, per_request=8)
    assert [len(requests) for requests in rounds] == [4, 4, 4] and all(len(r) == 8 for r in rounds[0])
    assert rounds[0] != rounds[1] != rounds[2]
