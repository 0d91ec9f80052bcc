"""Optional API keys: when API_KEY is set, the OpenAI routes need `Authorization: Bearer <key>`."""

from __future__ import annotations

import hmac

from flask import Flask, request

from .errors import ApiError

# The API routes outside /v1/ and /v2/: OpenAI's un-prefixed aliases, TEI's and vLLM's routes. /, /health,
# /metrics and the API docs stay public.
PROTECTED_ALIASES = ("/embeddings", "/models", "/rerank", "/embed", "/tokenize", "/detokenize")
PROTECTED_PREFIXES = ("/v1", "/v2")


def is_protected(path: str) -> bool:
    """True for paths that need a key: everything under /v1/ and /v2/, and the un-prefixed API routes."""
    roots = PROTECTED_PREFIXES + PROTECTED_ALIASES
    return path in roots or path.startswith(tuple(root + "/" for root in roots))


def key_matches(given: bytes, keys: tuple[bytes, ...]) -> bool:
    """Compare against every key in constant time, so timing reveals neither which key nor how much matched."""
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, key)
    return matched


def _bearer_token() -> bytes | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip().encode("latin-1")  # WSGI headers are latin-1 decoded: this recovers the bytes sent


def require_api_key(app: Flask, api_keys: tuple[str, ...]) -> None:
    """Reject requests to protected paths without one of api_keys; the key itself is never logged or echoed."""
    keys = tuple(key.encode("utf-8", "surrogateescape") for key in api_keys)

    @app.before_request
    def check_api_key():
        """401 unless a protected request carries one of the keys."""
        # A CORS preflight carries no credentials by design; it reveals nothing and must succeed.
        if request.method == "OPTIONS" or not is_protected(request.path):
            return
        token = _bearer_token()
        if token is None:
            raise ApiError(401, "Missing API key: send it as 'Authorization: Bearer <key>'",
                           code="missing_api_key", headers={"WWW-Authenticate": "Bearer"})
        if not key_matches(token, keys):
            raise ApiError(401, "Incorrect API key provided", code="invalid_api_key",
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
