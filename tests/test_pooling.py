"""Pooling functions on hand-made token states, padding included."""

import torch

from embedding_app.inference.pooling import pool_bos, pool_eos, pool_max, pool_mean

STATES = torch.tensor([[[1.0, 2.0], [3.0, -4.0], [100.0, 100.0]],
                       [[5.0, 6.0], [7.0, 8.0], [9.0, -10.0]]])
MASK = torch.tensor([[1, 1, 0], [1, 1, 1]])


def test_mean_ignores_padding():
    assert torch.allclose(pool_mean(STATES, MASK), torch.tensor([[2.0, -1.0], [7.0, 4.0 / 3.0]]))


def test_max_ignores_padding():
    assert torch.equal(pool_max(STATES, MASK), torch.tensor([[3.0, 2.0], [9.0, 8.0]]))


def test_bos_takes_first_token():
    assert torch.equal(pool_bos(STATES, MASK), torch.tensor([[1.0, 2.0], [5.0, 6.0]]))


def test_eos_takes_last_real_token():
    assert torch.equal(pool_eos(STATES, MASK), torch.tensor([[3.0, -4.0], [9.0, -10.0]]))
