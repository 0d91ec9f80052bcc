"""One error catalogue: every code the app, gunicorn and nginx answer is in it, with the catalogue's status and type."""

from __future__ import annotations

import ast
import json
import re
import shutil
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from embedding_app.api.error_catalogue import BY_STATUS, CATALOGUE
from embedding_app.api.errors import ApiError, error_body
from embedding_app.serving import worker
from harness.proxy import LocalProxy
from harness.server import ROOT, free_port

NGINX_PAGES = ROOT / "deploy" / "nginx" / "error-pages.conf.template"
# A location's answer: `location = /_proxy_errors/<name> { ... return <status> '<json>\n'; }`
LOCATION = re.compile(r"location = /_proxy_errors/(\w+) \{(.*?)\n\}", re.DOTALL)
RETURN = re.compile(r"return (\d{3}) '(.*)\\n';")


def python_sources() -> list[Path]:
    return [*sorted((ROOT / "embedding_app").rglob("*.py")), ROOT / "gunicorn.conf.py"]


def _literal(node: ast.AST | None):
    return node.value if isinstance(node, ast.Constant) else None


def raised_codes(tree: ast.AST) -> list[tuple[str, int | None]]:
    """(code, status or None) of every `code=` argument, ApiError/ApiError.of call and {"code": ...} literal."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            code = next((_literal(k.value) for k in node.keywords if k.arg == "code"), None)
            if name.endswith("ApiError.of") and node.args:
                code = _literal(node.args[0])
            status = _literal(node.args[0]) if name.endswith("ApiError") and node.args else None
            if code is not None:
                found.append((code, status))
        elif isinstance(node, ast.Dict):
            found += [(_literal(value), None) for key, value in zip(node.keys, node.values)
                      if _literal(key) == "code" and isinstance(_literal(value), str)]
    return found


def test_every_code_the_python_layers_answer_is_in_the_catalogue_with_its_status():
    found = {path.name: raised_codes(ast.parse(path.read_text())) for path in python_sources()}
    sites = [(name, code, status) for name, codes in found.items() for code, status in codes]
    assert len(sites) >= 25, sites  # the walk sees the raise sites (it would pass vacuously otherwise)
    for name, code, status in sites:
        assert code in CATALOGUE, f"{name}: code {code!r} is not in the catalogue"
        assert status is None or CATALOGUE[code].status == status, f"{name}: {code!r} sent with {status}"


def test_codes_by_status_are_catalogue_codes_of_that_status():
    assert all(CATALOGUE[code].status == status for status, code in BY_STATUS.items())


def test_every_status_has_one_type():
    types = {}
    for fault in CATALOGUE.values():
        assert types.setdefault(fault.status, fault.type) == fault.type, fault


def test_api_error_refuses_a_code_the_catalogue_lacks_or_a_wrong_status():
    with pytest.raises(ValueError, match="absent"):
        ApiError(400, "typo", code="invalid_jsno")
    with pytest.raises(ValueError, match="says 400"):
        ApiError(422, "wrong status", code="invalid_json")
    assert ApiError(503, "past the time limit", code="timeout").status == 503  # gunicorn's worker_abort sends this


def test_api_error_of_takes_the_status_and_default_message_from_the_catalogue():
    error = ApiError.of("model_not_found", param="model")
    assert (error.status, error.message, error.code, error.param) == (404, CATALOGUE["model_not_found"].message,
                                                                      "model_not_found", "model")
    assert ApiError.of("too_many_tokens", "this many").message == "this many"


def test_error_body_type_is_the_catalogue_type():
    for code, fault in CATALOGUE.items():
        assert json.loads(error_body(fault.status, "x", code=code))["error"]["type"] == fault.type


@pytest.mark.parametrize("status, code", [(400, "malformed_request"), (403, "forbidden"), (414, "uri_too_long"),
                                          (417, "expectation_failed"), (431, "headers_too_large"),
                                          (500, "internal_error"), (501, "malformed_request")])
def test_gunicorn_errors_answer_catalogue_codes(monkeypatch, status, code):
    sent = []
    monkeypatch.setattr(worker.util, "write_nonblock", lambda sock, data: sent.append(data))
    worker.write_json_error(None, status, "Reason", "")
    head, _, body = sent[0].partition(b"\r\n\r\n")
    error = json.loads(body)["error"]
    assert (int(head.split()[1]), error["code"], error["type"]) == (CATALOGUE[code].status, code, CATALOGUE[code].type)
    assert error["message"] == CATALOGUE[code].message  # gunicorn gave none


def nginx_pages() -> dict[str, tuple[int, dict]]:
    """location name: (status, error object) of every error page in the nginx template that answers itself."""
    pages = {}
    for name, block in LOCATION.findall(NGINX_PAGES.read_text()):
        if answer := RETURN.search(block):
            pages[name] = int(answer[1]), json.loads(answer[2])["error"]
    return pages


def test_nginx_error_pages_answer_catalogue_codes_with_their_status_and_type():
    pages = nginx_pages()
    assert len(pages) >= 10, pages
    for name, (status, error) in pages.items():
        code = error["code"]
        assert code in CATALOGUE, f"nginx page {name} answers {code!r}, which the catalogue lacks"
        assert (status, error["type"]) == CATALOGUE[code][:2], name
        assert set(error) == {"message", "type", "param", "code"} and error["param"] is None
        assert name.removesuffix("_fixed") == code  # a page is named after its code


def test_every_nginx_error_page_target_exists():
    text = NGINX_PAGES.read_text()
    targets = set(re.findall(r"error_page [\d =]+/_proxy_errors/(\w+);", text))
    assert targets and targets <= set(re.findall(r"location = /_proxy_errors/(\w+) \{", text))
    assert all(target in CATALOGUE or target.removesuffix("_fixed") in CATALOGUE for target in targets)


def exchange(port: int, data: bytes) -> tuple[int, dict]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)["error"]


@pytest.mark.skipif(shutil.which("nginx", path="/usr/sbin:/usr/bin") is None, reason="nginx is not installed")
def test_nginx_answers_the_codes_gunicorn_answers(output_dir):
    nothing = SimpleNamespace(port=free_port(), health_port=free_port(), workers=1)  # no server: nginx answers alone
    cases = {b"GARBAGE\r\n\r\n": "malformed_request",
             b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 6000 + b"\r\n\r\n": "headers_too_large",
             b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n": "uri_too_long",
             b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n": "upstream_unavailable"}
    with LocalProxy(nothing, output_dir / "nginx-error-catalogue.log") as proxy:
        for data, code in cases.items():
            status, error = exchange(proxy.port, data)
            assert (status, error["code"], error["type"]) == (CATALOGUE[code].status, code, CATALOGUE[code].type)
