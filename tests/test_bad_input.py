"""A matrix of bad requests over real HTTP against one gunicorn: each gets an OpenAI-shaped 4xx, no worker dies."""

import json
import time

import pytest
import requests

from embedding_app.api.error_catalogue import CATALOGUE
from harness.server import GunicornServer

JSON = {"Content-Type": "application/json"}
VOCAB = 30522  # the tiny model uses all-MiniLM-L6-v2's tokenizer


def body(**fields) -> bytes:
    return json.dumps(fields).encode()


class Chunks:
    """A chunked (no Content-Length) body of total bytes; iterable again, so that other tests can send it too."""

    def __init__(self, total: int, size: int = 1 << 20):
        self.total, self.size = total, size

    def __iter__(self):
        for _ in range(self.total // self.size):
            yield b"x" * self.size


# (id, method, path, headers, body, expected status, expected param or None)
CASES = [
    # wrong types at every field
    ("input-null", "post", "/v1/embeddings", JSON, body(input=None), 400, "input"),
    ("input-number", "post", "/v1/embeddings", JSON, body(input=42), 400, "input"),
    ("input-object", "post", "/v1/embeddings", JSON, body(input={"text": "x"}), 400, "input"),
    ("input-bool", "post", "/v1/embeddings", JSON, body(input=True), 400, "input"),
    ("input-list-of-bools", "post", "/v1/embeddings", JSON, body(input=[True]), 400, "input[0]"),
    ("input-float-id", "post", "/v1/embeddings", JSON, body(input=[1, 2.5]), 400, "input[1]"),
    ("input-mixed-kinds", "post", "/v1/embeddings", JSON, body(input=["ok", 3]), 400, "input[1]"),
    ("input-string-in-ids", "post", "/v1/embeddings", JSON, body(input=[[1, 2], [3, "x"]]), 400, "input[1][1]"),
    ("input-nested-garbage", "post", "/v1/embeddings", JSON, body(input=[[1], [[2, [3]]]]), 400, "input[1][0]"),
    ("input-list-of-objects", "post", "/v1/embeddings", JSON, body(input=[{"a": 1}]), 400, "input[0]"),
    ("input-empty-string", "post", "/v1/embeddings", JSON, body(input=""), 400, "input"),
    ("input-empty-list", "post", "/v1/embeddings", JSON, body(input=[]), 400, "input"),
    ("input-empty-id-list", "post", "/v1/embeddings", JSON, body(input=[[]]), 400, "input[0]"),
    ("input-empty-item", "post", "/v1/embeddings", JSON, body(input=["ok", ""]), 400, "input[1]"),
    ("input-missing", "post", "/v1/embeddings", JSON, body(model="tiny"), 400, "input"),
    ("input-lone-surrogate", "post", "/v1/embeddings", JSON, b'{"input": ["ok", "a\\ud800b"]}', 400, "input[1]"),
    ("model-number", "post", "/v1/embeddings", JSON, body(input="x", model=5), 400, "model"),
    ("model-list", "post", "/v1/embeddings", JSON, body(input="x", model=["tiny"]), 400, "model"),
    ("model-unknown", "post", "/v1/embeddings", JSON, body(input="x", model="text-embedding-3-small"), 404, "model"),
    ("format-unknown", "post", "/v1/embeddings", JSON, body(input="x", encoding_format="int8"), 400, "encoding_format"),
    ("format-number", "post", "/v1/embeddings", JSON, body(input="x", encoding_format=1), 400, "encoding_format"),
    ("format-null", "post", "/v1/embeddings", JSON, body(input="x", encoding_format=None), 400, "encoding_format"),
    ("dimensions-string", "post", "/v1/embeddings", JSON, body(input="x", dimensions="8"), 400, "dimensions"),
    ("dimensions-zero", "post", "/v1/embeddings", JSON, body(input="x", dimensions=0), 400, "dimensions"),
    ("dimensions-negative", "post", "/v1/embeddings", JSON, body(input="x", dimensions=-1), 400, "dimensions"),
    ("dimensions-float", "post", "/v1/embeddings", JSON, body(input="x", dimensions=1.5), 400, "dimensions"),
    ("dimensions-bool", "post", "/v1/embeddings", JSON, body(input="x", dimensions=True), 400, "dimensions"),
    ("user-number", "post", "/v1/embeddings", JSON, body(input="x", user=123), 400, "user"),
    ("unknown-field", "post", "/v1/embeddings", JSON, body(input="x", surprise=1), 400, "surprise"),
    # huge numbers
    ("dimensions-huge", "post", "/v1/embeddings", JSON, body(input="x", dimensions=10 ** 30), 400, "dimensions"),
    ("dimensions-overflow-float", "post", "/v1/embeddings", JSON, b'{"input": "x", "dimensions": 1e400}', 400,
     "dimensions"),
    ("id-huge", "post", "/v1/embeddings", JSON, body(input=[10 ** 25]), 400, "input"),
    ("id-5000-digits", "post", "/v1/embeddings", JSON, b'{"input": [' + b"9" * 5000 + b"]}", 400, None),
    ("id-float-1e308", "post", "/v1/embeddings", JSON, b'{"input": [1e308]}', 400, "input[0]"),
    # NaN / Infinity literals
    ("nan", "post", "/v1/embeddings", JSON, b'{"input": NaN}', 400, None),
    ("infinity-in-ids", "post", "/v1/embeddings", JSON, b'{"input": [1, Infinity]}', 400, None),
    ("minus-infinity", "post", "/v1/embeddings", JSON, b'{"input": "x", "dimensions": -Infinity}', 400, None),
    # token ids out of range
    ("id-vocab-size", "post", "/v1/embeddings", JSON, body(input=[VOCAB]), 400, "input"),
    ("id-negative", "post", "/v1/embeddings", JSON, body(input=[5, -1]), 400, "input"),
    ("id-out-of-range-second", "post", "/v1/embeddings", JSON, body(input=[[1], [10 ** 9]]), 400, "input[1]"),
    # malformed JSON
    ("duplicate-keys", "post", "/v1/embeddings", JSON, b'{"input": "a", "input": "b"}', 400, "input"),
    ("truncated-json", "post", "/v1/embeddings", JSON, b'{"input": "x"', 400, None),
    ("trailing-garbage", "post", "/v1/embeddings", JSON, b'{"input": "x"} extra', 400, None),
    ("array-body", "post", "/v1/embeddings", JSON, b"[1, 2]", 400, None),
    ("string-body", "post", "/v1/embeddings", JSON, b'"text"', 400, None),
    ("null-body", "post", "/v1/embeddings", JSON, b"null", 400, None),
    ("empty-body", "post", "/v1/embeddings", JSON, b"", 400, None),
    ("empty-body-no-content-type", "post", "/v1/embeddings", {}, b"", 400, None),
    ("invalid-utf8", "post", "/v1/embeddings", JSON, b'{"input": "\xff\xfe"}', 400, None),
    ("invalid-utf8-start", "post", "/v1/embeddings", JSON, b"\xff\xfe{}", 400, None),
    ("deep-nesting", "post", "/v1/embeddings", JSON, b"[" * 100_000 + b"]" * 100_000, 400, None),
    ("deep-nesting-in-input", "post", "/v1/embeddings", JSON, b'{"input": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
     400, None),
    # wrong content type
    ("content-type-text", "post", "/v1/embeddings", {"Content-Type": "text/plain"}, body(input="x"), 415, None),
    ("content-type-form", "post", "/v1/embeddings", {"Content-Type": "application/x-www-form-urlencoded"},
     b"input=x", 415, None),
    ("content-type-multipart", "post", "/v1/embeddings", {"Content-Type": "multipart/form-data; boundary=b"},
     b"--b\r\n\r\nx\r\n--b--", 415, None),
    # size limits
    ("body-10mb", "post", "/v1/embeddings", JSON, b'{"input": "' + b"x" * 10_000_000 + b'"}', 413, None),
    ("body-10mb-chunked", "post", "/v1/embeddings", JSON, Chunks(10 << 20), 413, None),
    ("inputs-2049", "post", "/v1/embeddings", JSON, body(input=["x"] * 2049), 400, "input"),
    # routes and methods
    ("get-embeddings", "get", "/v1/embeddings", {}, None, 405, None),
    ("put-embeddings", "put", "/v1/embeddings", JSON, body(input="x"), 405, None),
    ("unknown-route", "get", "/v1/completions", {}, None, 404, None),
    ("unknown-model-id", "get", "/v1/models/gpt-4", {}, None, 404, "model"),
    # several models and prompts (the server serves tiny, without prompts, and tiny-prompted)
    ("model-unknown-among-several", "post", "/v1/embeddings", JSON, body(input="x", model="tiny-2"), 404, "model"),
    ("input-type-unknown", "post", "/v1/embeddings", JSON, body(input="x", model="tiny-prompted", input_type="search"),
     400, "input_type"),
    ("input-type-number", "post", "/v1/embeddings", JSON, body(input="x", input_type=1), 400, "input_type"),
    ("input-type-null-string", "post", "/v1/embeddings", JSON, body(input="x", input_type="null"), 400, "input_type"),
    ("prompt-name-on-model-without-prompts", "post", "/v1/embeddings", JSON, body(input="x", prompt_name="query"), 400,
     "prompt_name"),
    ("prompt-name-unknown", "post", "/v1/embeddings", JSON, body(input="x", model="tiny-prompted", prompt_name="code"),
     400, "prompt_name"),
    ("prompt-name-list", "post", "/v1/embeddings", JSON, body(input="x", model="tiny-prompted", prompt_name=["query"]),
     400, "prompt_name"),
    ("input-type-and-prompt-name", "post", "/v1/embeddings", JSON,
     body(input="x", model="tiny-prompted", input_type="query", prompt_name="query"), 400, "prompt_name"),
]


@pytest.fixture(scope="module")
def server(tiny_model_dir, tiny_prompted_dir, output_dir):
    """One real gunicorn (2 workers, the tiny model and its prompted copy, default limits) shared by every case."""
    with GunicornServer(output_dir / "gunicorn-bad-input.log", workers=2, QUANTIZE="false",
                        MODEL_NAME=f"tiny={tiny_model_dir},tiny-prompted={tiny_prompted_dir}") as server:
        server.pids_at_start = set(server.worker_pids())
        yield server


def test_matrix_is_large_enough():
    assert len(CASES) >= 40 and len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("method, path, headers, data, status, param", [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_bad_request_gets_openai_shaped_4xx(server, method, path, headers, data, status, param):
    response = requests.request(method, server.url + path, headers=headers, data=data, timeout=60)
    check_openai_error(response, status, param)


def check_openai_error(response: requests.Response, status: int, param: str | None) -> None:
    """The response is this status with an OpenAI-shaped JSON error body (naming param, when given)."""
    assert response.status_code == status, response.text[:300]
    assert response.headers["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["message"] and "Traceback" not in error["message"]
    assert CATALOGUE[error["code"]][:2] == (status, error["type"])  # a catalogue code, with or without the proxy
    if param is not None:
        assert error["param"] == param


MB = 8_000_000
# (text, tokens the model sees, [CLS] and [SEP] included) for texts that are not prose, just under 8 MB of JSON.
COSTLY_SHAPES = {
    "spaces-between-words": ("hello" + " " * MB + "world", 4),
    "sentence-then-newlines": ("The food was delicious." + "\n" * (MB // 2), 7),  # "\\n" in JSON: 2 bytes
    "thai-without-spaces": ("สวัสดีครับ" * (MB // 30), 3),  # 3 bytes a character in UTF-8; one [UNK]
    "one-giant-word": ("a" * MB, 3),
}


@pytest.mark.parametrize("text, prompt_tokens", COSTLY_SHAPES.values(), ids=COSTLY_SHAPES.keys())
def test_costly_text_shapes_answer_fast_and_right(server, text, prompt_tokens):
    data = json.dumps({"input": text, "model": "tiny"}, ensure_ascii=False).encode()
    started = time.monotonic()
    response = requests.post(f"{server.url}/v1/embeddings", data=data, headers=JSON, timeout=60)
    seconds = time.monotonic() - started
    assert response.status_code == 200, response.text[:300]
    assert response.json()["usage"]["prompt_tokens"] == prompt_tokens
    assert seconds < 1.5  # a safety bound, not a speed claim: before, 2-29 s


def test_out_of_vocabulary_ids_name_the_langchain_flag(server):
    response = requests.post(f"{server.url}/v1/embeddings", json={"input": [[101, 100_256]]})
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "100256" in message and "check_embedding_ctx_length=False" in message


def test_server_is_healthy_with_the_same_workers_afterwards(server):
    assert requests.get(f"{server.url}/health", timeout=10).json()["status"] == "ok"
    assert requests.post(f"{server.url}/v1/embeddings", json={"input": "still fine"}).status_code == 200
    assert set(server.worker_pids()) == server.pids_at_start
    log = server.log()
    assert "Traceback" not in log and "WORKER TIMEOUT" not in log and " 500 " not in log
