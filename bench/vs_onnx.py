"""The server over HTTP against ONNX Runtime in-process, issue 16's measure: python -m bench.vs_onnx [--rounds 3].

One server per QUANTIZE value (true, false), each 1 worker x 1 thread with default settings otherwise; one client
posts 12 requests x 32 mixed real texts (new ones every round, base64 as the OpenAI SDK asks), then the same texts
one per request. ONNX Runtime fp32
(fused BERT graph) and per-channel QInt8 run in this process on one thread, one text per call, tokenizing included.
Engines alternate within each round; rate = real tokens / wall seconds, best of rounds. Fidelity: each engine's
vectors of the project's texts against sentence-transformers fp32. The hardware's share: each rate against the
Linear layers' ceiling on this core (their FLOP per token at the fastest fp32 GEMM of MKL, oneDNN and ONNX Runtime,
or at the fastest GEMM of the engine's own precision: int8, bf16), the GEMMs timed on one thread before and after
the engines.
"""

from __future__ import annotations

import argparse
import base64
import json
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import requests

from harness.quality import measure_fidelity
from harness.server import GunicornServer
from harness.workload import DATA, fresh_rounds, load_texts

from .int8 import fastest_gemms
from .report import load_average, machine, table
from .roofline import linear_flop_per_token
from .servers import RESULTS

REQUESTS, TEXTS_PER_REQUEST = 12, 32
QUANTIZE = ("true", "false")
RATIOS = (("true", "ORT int8 per-channel QInt8"), ("true", "ORT fp32"), ("false", "ORT fp32"))  # issue 16's three
SINGLES = ", one text per request"  # the same server, the same texts, one per request: as a client embedding queries


class HttpEmbedder:
    """A running server as an embedder of texts, and of token-id sequences (the API's int[][]) for measure_fidelity."""

    def __init__(self, url: str):
        self.base, self.url, self.session = url, f"{url}/v1/embeddings", requests.Session()

    def mode(self) -> str:
        """The mode the server's worker chose (fp32, bf16, int8...), from /health."""
        return self.session.get(f"{self.base}/health", timeout=30).json()["mode"]

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Unit vectors of texts, as a client sends them."""
        return post(self.session, self.url, texts)

    def embed_one_by_one(self, texts: list[str]) -> np.ndarray:
        """Unit vectors of texts, one request each."""
        return np.concatenate([self.embed_texts([text]) for text in texts])

    def embed(self, sequences: list[list[int]]) -> np.ndarray:
        """Unit vectors of finished token sequences, in order."""
        # The server adds the special tokens itself, as for text: send what lies between [CLS] and [SEP].
        return post(self.session, self.url, [ids[1:-1] for ids in sequences])


def post(session: requests.Session, url: str, inputs: list) -> np.ndarray:
    """The vectors of one embeddings request, decoded from base64 little-endian float32."""
    response = session.post(url, json={"input": inputs, "encoding_format": "base64"}, timeout=600)
    response.raise_for_status()
    return np.stack([np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4") for item in response.json()["data"]])


class TokenizingOrt:
    """An ONNX Runtime embedder that tokenizes its texts first, as a server in front of it must."""

    def __init__(self, path: Path, tokenizer, max_tokens: int):
        from .onnx_engine import OrtEmbedder

        self.engine, self.tokenizer, self.max_tokens = OrtEmbedder(path), tokenizer, max_tokens

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Unit vectors of texts, truncated as the model is."""
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_tokens)["input_ids"]
        return self.engine.embed(ids)


class Reference:
    """sentence-transformers fp32 on the model: its tokenizer, and its vectors of the project's texts and queries."""

    def __init__(self, path: str):
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(path, device="cpu")
        self.tokenizer, self.max_tokens = model.tokenizer, model.max_seq_length
        self.texts, queries = load_texts(), json.loads((DATA / "queries.json").read_text())["queries"]
        self.passages, self.queries = self.ids(self.texts), self.ids(queries)
        self.vectors = (model.encode(self.texts, normalize_embeddings=True),
                        model.encode(queries, normalize_embeddings=True))

    def ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids of texts, special tokens included, truncated as the model is."""
        return self.tokenizer(texts, truncation=True, max_length=self.max_tokens)["input_ids"]


def fidelity(quality) -> list[str]:
    """The table's fidelity cells: min and mean cosine to sentence-transformers, top-10 overlap."""
    return [f"{quality.min_cosine:.5f}", f"{quality.mean_cosine:.5f}", f"{quality.top10_overlap:.3f}"]


def best_rates(engines: dict, reference: Reference, rounds: int, requests_per_round: int) -> dict[str, float]:
    """Real tokens/s of each engine (a call embedding a list of texts), alternating, best of rounds."""
    best = dict.fromkeys(engines, 0.0)
    warm_up, *timed = fresh_rounds(reference.texts, rounds + 1, requests_per_round, TEXTS_PER_REQUEST, seed=16)
    for embed in engines.values():  # first calls: sessions, thread pools, lazy imports
        embed(warm_up[0])
    for workload in timed:
        tokens = sum(len(ids) for request in workload for ids in reference.ids(request))
        for name, embed in engines.items():
            started = time.perf_counter()
            for request in workload:
                embed(request)
            best[name] = max(best[name], tokens / (time.perf_counter() - started))
    return best


def run(rounds: int, model_dir: str = "", requests_per_round: int = REQUESTS) -> str:
    """Markdown: real tokens/s and fidelity of the two servers and ONNX Runtime's two engines, with the ratios."""
    import onnxruntime
    from transformers import AutoConfig

    from embedding_app.inference.model_source import default_model_dir

    from .onnx_engine import export

    path = model_dir or str(default_model_dir())
    reference = Reference(path)
    onnx_files = export(path, Path(tempfile.gettempdir()) / f"bench-vs-onnx-{Path(path).name}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        servers = {f"server QUANTIZE={quantize}": HttpEmbedder(stack.enter_context(GunicornServer(
            RESULTS / f"gunicorn-vs-onnx-{quantize}.log", workers=1, MODEL_NAME=model_dir, QUANTIZE=quantize,
            EMBEDDING_SERVER_THREADS_PER_WORKER="1")).url) for quantize in QUANTIZE}
        modes = {name: server.mode() for name, server in servers.items()}
        orts = {name: TokenizingOrt(file, reference.tokenizer, reference.max_tokens) for name, file in onnx_files.items()}
        engines = {name: server.embed_texts for name, server in servers.items()} | {
            name + SINGLES: server.embed_one_by_one for name, server in servers.items()} | {
            name: ort.embed_texts for name, ort in orts.items()}
        kinds = ("fp32", "int8") + (("bf16",) if "bf16" in modes.values() else ())  # emulated bf16 is slow to time
        before = fastest_gemms(kinds)
        best = best_rates(engines, reference, rounds, requests_per_round)
        gemms = {kind: max(after, before[kind], key=lambda item: item[1])
                 for kind, after in fastest_gemms(kinds).items()}
        quality = {name: measure_fidelity(embedder, reference.passages, reference.queries, *reference.vectors)
                   for name, embedder in (servers | {name: ort.engine for name, ort in orts.items()}).items()}
    flop = linear_flop_per_token(AutoConfig.from_pretrained(path))
    rows, ratios = _results(best, quality, modes, {kind: rate * 1e9 / flop for kind, (_, rate) in gemms.items()})
    return (f"{machine()}; onnxruntime {onnxruntime.__version__}; load {load_average()}; servers 1 worker x 1 thread "
            f"over HTTP (one client), ONNX Runtime in-process on one thread; {requests_per_round} requests x "
            f"{TEXTS_PER_REQUEST} mixed real texts per round, new every round, best of {rounds} alternating; "
            "fidelity against sentence-transformers fp32. Fastest GEMM on this core (4096x384 by 1536x384, one "
            "thread): "
            + "; ".join(f"{kind}: {name} {rate:.1f} GOP/s, a ceiling of {rate * 1e9 / flop:.0f} tokens/s"
                        for kind, (name, rate) in gemms.items())
            + f" (the Linear layers' {flop / 1e6:.1f} MFLOP per token alone)\n\n"
            + table(["engine", "real tokens/s", "of the Linear ceiling", "min cos", "mean cos", "top-10 overlap"],
                    rows)
            + "\n\n" + "\n\n".join(ratios))


def precision(engine: str) -> str:
    """The GEMM precision an engine (a server's mode, or an ONNX Runtime engine's name) computes in."""
    return "int8" if "int8" in engine else "bf16" if engine == "bf16" else "fp32"


def _results(best: dict[str, float], quality: dict, modes: dict[str, str],
             ceilings: dict[str, float]) -> tuple[list[list], list[str]]:
    """The table's rows (rate, share of the ceiling, fidelity) and issue 16's ratios, batched and one text each."""
    # ceilings: tokens/s of the Linear layers alone at this core's fastest GEMM per precision (fp32, int8, bf16).
    rows = []
    for name, rate in best.items():
        server = name.removesuffix(SINGLES)  # a server's fidelity and mode hold whatever its requests
        label = name + (f" ({modes[server]})" if server in modes else "")
        ceiling = ceilings[precision(modes.get(server, server))]
        rows.append([label, round(rate), f"{100 * rate / ceiling:.0f} %"] + fidelity(quality[server]))
    ratios = [f"{requests}: " + "; ".join(
        f"QUANTIZE={quantize} / {ort}: **{best[f'server QUANTIZE={quantize}{suffix}'] / best[ort]:.2f}x**"
        for quantize, ort in RATIOS) for requests, suffix in (("32 texts per request", ""), ("one text each", SINGLES))]
    return rows, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(run(args.rounds))


if __name__ == "__main__":
    main()
