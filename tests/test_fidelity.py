"""Server embeddings against sentence-transformers on the same model directory, and batch invariance."""

import numpy as np
import pytest
import requests


@pytest.fixture(scope="module")
def reference(minilm_dir, texts):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm_dir), device="cpu")
    return model.encode(texts, normalize_embeddings=True, batch_size=32)


def embed(server, texts):
    response = requests.post(f"{server.url}/v1/embeddings", json={"input": texts}, timeout=300)
    response.raise_for_status()
    return np.array([item["embedding"] for item in response.json()["data"]], dtype=np.float32)


def test_texts_include_short_and_truncated(minilm_dir, texts):
    from transformers import AutoTokenizer

    lengths = [len(ids) for ids in AutoTokenizer.from_pretrained(minilm_dir)(texts)["input_ids"]]
    assert len(texts) >= 50 and min(lengths) < 20 and sum(n > 256 for n in lengths) >= 10


def test_fp32_matches_sentence_transformers(minilm_server, texts, reference):
    served = embed(minilm_server, texts)
    cosines = np.sum(served * reference, axis=1)
    assert cosines.min() >= 0.99999, f"worst text {int(cosines.argmin())}: {cosines.min()}"


def test_text_alone_matches_text_in_a_padded_batch(minilm_server, texts):
    shortest = min(texts, key=len)
    batch = embed(minilm_server, [max(texts, key=len), shortest] + texts[:30])
    alone = embed(minilm_server, [shortest])
    assert float(alone[0] @ batch[1]) >= 0.99999
