"""API keys, CORS, trust_remote_code and secrets: in-process for the rules, real gunicorn for clients and logs."""

import time

import openai
import pytest
import requests

from embedding_app import create_app
from embedding_app.api.auth import is_protected, key_matches
from embedding_app.config.settings import Settings, SettingsError, settings_from_env
from harness.server import GunicornServer, wait_until

from .test_api import assert_error

KEYS = ("sk-test-first-key", "sk-test-second-key")
WRONG_KEY = "sk-wrong-but-maybe-real-elsewhere"
HF_TOKEN = "hf_never_print_this_token"
ORIGIN = "https://app.example.com"
PROTECTED = [("post", "/v1/embeddings"), ("post", "/embeddings"), ("get", "/v1/models"), ("get", "/models"),
             ("get", "/v1/models/tiny"), ("get", "/models/tiny"), ("get", "/v1/anything")]


@pytest.fixture
def keyed(make_client):
    """A test client that requires one of KEYS."""
    return make_client(api_keys=KEYS)


@pytest.fixture(scope="module")
def secured_server(tiny_model_dir, output_dir):
    """Real gunicorn with two API keys, CORS for ORIGIN, an HF token and debug logging."""
    with GunicornServer(output_dir / "gunicorn-security.log", workers=1, MODEL_NAME=str(tiny_model_dir),
                        SERVED_MODEL_NAME="tiny", API_KEY=",".join(KEYS), HF_TOKEN=HF_TOKEN, CORS_ALLOW_ORIGINS=ORIGIN,
                        LOG_LEVEL="debug") as server:
        yield server


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize("method, path", PROTECTED)
def test_protected_paths_without_a_key_get_openai_shaped_401(keyed, method, path):
    response = getattr(keyed, method)(path, json={"input": "x"})
    error = assert_error(response, 401, code="missing_api_key")
    assert error["type"] == "authentication_error"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("key", KEYS)
def test_every_configured_key_is_accepted(keyed, key):
    assert keyed.post("/v1/embeddings", json={"input": "x"}, headers=bearer(key)).status_code == 200


@pytest.mark.parametrize("header", [f"Bearer {WRONG_KEY}", f"Bearer {KEYS[0]}x", f"Basic {KEYS[0]}", KEYS[0],
                                    "Bearer ", "Bearer sk-t\u00e9st"])
def test_wrong_or_malformed_credentials_get_401_without_echoing_them(keyed, header):
    response = keyed.post("/v1/embeddings", json={"input": "x"}, headers={"Authorization": header})
    assert_error(response, 401)
    credential = header.split(" ", 1)[-1].strip()
    assert not credential or credential not in response.get_data(as_text=True)


def test_bearer_scheme_is_case_insensitive(keyed):
    response = keyed.get("/v1/models", headers={"Authorization": f"bearer {KEYS[1]}"})
    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/health", "/", "/docs", "/openapi.json"])
def test_public_routes_need_no_key(keyed, path):
    assert keyed.get(path).status_code != 401
    assert not is_protected(path)


def test_every_openai_route_is_protected():
    app = create_app(Settings())
    rules = [rule.rule for rule in app.url_map.iter_rules() if rule.endpoint.startswith("openai.")]
    assert rules and all(is_protected(rule) for rule in rules)


def test_key_matches_compares_against_every_key():
    keys = tuple(key.encode() for key in KEYS)
    assert key_matches(KEYS[1].encode(), keys)
    assert not key_matches(KEYS[0][:-1].encode(), keys)
    assert not key_matches(b"", keys)


def test_no_key_configured_means_open_access(client):
    assert client.post("/v1/embeddings", json={"input": "x"}).status_code == 200


def preflight(options, url="/v1/embeddings", origin=ORIGIN):
    """A browser's CORS preflight for a POST with Authorization and Content-Type, sent with options()."""
    return options(url, headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                 "Access-Control-Request-Headers": "authorization, content-type"})


def test_cors_preflight_allows_authorization_and_content_type_without_a_key(make_client):
    response = preflight(make_client(api_keys=KEYS, cors_allow_origins=(ORIGIN,)).options)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "POST" in response.headers["Access-Control-Allow-Methods"]


def test_cors_headers_on_answers_and_on_401(make_client):
    client = make_client(api_keys=KEYS, cors_allow_origins=(ORIGIN,))
    ok = client.post("/v1/embeddings", json={"input": "x"}, headers={"Origin": ORIGIN, **bearer(KEYS[0])})
    refused = client.post("/v1/embeddings", json={"input": "x"}, headers={"Origin": ORIGIN})
    assert ok.status_code == 200 and refused.status_code == 401
    for response in (ok, refused):  # a browser can only read the 401 body with the header
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_cors_wildcard_allows_any_origin_with_explicit_headers(make_client):
    response = preflight(make_client(cors_allow_origins=("*",)).options, origin="https://any.example")
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "https://any.example")  # flask-cors echoes it
    assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()  # "*" would not cover it


def test_cors_ignores_other_origins(make_client):
    response = preflight(make_client(cors_allow_origins=(ORIGIN,)).options, origin="https://evil.example")
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize("origin, allowed", [
    ("https://app.example.com", True), ("https://a.b.example.com", True), ("https://APP.example.com", True),
    ("https://xexample.com", False), ("https://example.com", False), ("http://app.example.com", False),
    ("https://app.example.com.evil.net", False), ("https://app.example.com:8443", False),
    ("https://evil.net/.example.com", False), ("https://a_b.example.com", False)])
def test_cors_subdomain_wildcard_allows_subdomains_only(make_client, origin, allowed):
    response = preflight(make_client(cors_allow_origins=("https://*.example.com",)).options, origin=origin)
    assert response.headers.get("Access-Control-Allow-Origin") == (origin if allowed else None)


@pytest.mark.parametrize("origin", ["https://app.example.com.evil.net", "https://app-example.com",
                                    "https://app.example.co", "https://app.example.com:443"])
def test_cors_exact_origin_is_matched_exactly(make_client, origin):
    client = make_client(cors_allow_origins=("https://app.example.com", "http://[::1]:8080"))
    assert "Access-Control-Allow-Origin" not in preflight(client.options, origin=origin).headers
    allowed = preflight(client.options, origin="http://[::1]:8080")
    assert allowed.headers["Access-Control-Allow-Origin"] == "http://[::1]:8080"
    assert "Access-Control-Allow-Origin" not in preflight(client.options, origin="http://[::1]:8081").headers


@pytest.mark.parametrize("value", ["https://app.example.com/", "https://*example.com", "*.example.com",
                                   "https://app.*.com", "https://app.example.com/path", "https://(a|b).example.com"])
def test_cors_origin_that_is_not_an_origin_stops_the_start_up(value):
    with pytest.raises(SettingsError) as error:
        settings_from_env({"CORS_ALLOW_ORIGINS": f"https://ok.example, {value}"})
    assert "CORS_ALLOW_ORIGINS" in str(error.value) and repr(value) in str(error.value)
    assert "scheme://*.domain" in str(error.value)


def test_cors_is_off_by_default(client):
    assert "Access-Control-Allow-Origin" not in preflight(client.options).headers
    response = client.post("/v1/embeddings", json={"input": "x"}, headers={"Origin": ORIGIN})
    assert response.status_code == 200 and "Access-Control-Allow-Origin" not in response.headers


def test_trust_remote_code_is_off_unless_enabled(tiny_model_dir, monkeypatch):
    from embedding_app.inference import loader as loader_module
    from embedding_app.inference.model_source import resolve_model

    assert Settings().trust_remote_code is False and settings_from_env({}).trust_remote_code is False
    assert settings_from_env({"TRUST_REMOTE_CODE": "true"}).trust_remote_code is True
    seen = []
    original = loader_module.AutoModel.from_pretrained
    monkeypatch.setattr(loader_module.AutoModel, "from_pretrained",
                        lambda *args, **kwargs: seen.append(kwargs) or original(*args, **kwargs))
    loader_module.load_engine(resolve_model(str(tiny_model_dir), None), Settings(), "fp32")
    assert seen and seen[0]["trust_remote_code"] is False


def test_openai_client_with_api_key_works(secured_server):
    for key in KEYS:
        client = openai.OpenAI(base_url=f"{secured_server.url}/v1", api_key=key, max_retries=0)
        assert len(client.embeddings.create(model="tiny", input=["a", "b"]).data) == 2
        assert [model.id for model in client.models.list()] == ["tiny"]


def test_openai_client_with_wrong_key_gets_401_and_does_not_retry(secured_server):
    def refusals():
        return secured_server.log().count('"POST /v1/embeddings HTTP/1.1" 401')

    before = refusals()
    client = openai.OpenAI(base_url=f"{secured_server.url}/v1", api_key=WRONG_KEY, max_retries=2)
    with pytest.raises(openai.AuthenticationError) as error:
        client.embeddings.create(model="tiny", input="x")
    assert error.value.status_code == 401 and error.value.body["code"] == "invalid_api_key"
    wait_until(lambda: refusals() > before, 10, "the access log line")  # written just after the answer
    time.sleep(0.5)
    assert refusals() == before + 1


def test_public_routes_and_preflight_over_http(secured_server):
    assert requests.get(f"{secured_server.url}/health").json()["status"] == "ok"
    assert requests.get(f"{secured_server.url}/").status_code == 200
    response = preflight(requests.options, f"{secured_server.url}/v1/embeddings")
    assert response.status_code == 200 and response.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_secrets_never_reach_logs_or_error_bodies(secured_server):
    url = f"{secured_server.url}/v1/embeddings"

    def posts():
        return secured_server.log().count('"POST /v1/embeddings HTTP/1.1"')

    before = posts()
    bodies = [requests.post(url, json={"input": "x"}, headers=bearer(key)).text for key in (*KEYS, WRONG_KEY)]
    bodies.append(requests.post(url, data=b"{", headers={"Content-Type": "application/json",
                                                          **bearer(KEYS[0])}).text)
    # Access lines are written just after the answers: wait for all of them before reading the log.
    wait_until(lambda: posts() == before + len(bodies), 10, "the access lines")
    log = secured_server.log()
    assert "loaded" in log and "/v1/embeddings" in log
    assert f"API key required ({len(KEYS)} configured); CORS {ORIGIN}" in log
    for secret in (*KEYS, WRONG_KEY, HF_TOKEN):
        assert secret not in log
        assert not any(secret in body for body in bodies)
    assert "Traceback" not in log
