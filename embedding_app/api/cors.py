"""CORS for browser pages on the configured origins: exact origins, `scheme://*.domain` subdomain wildcards, or `*`."""

from __future__ import annotations

import re

from flask import Flask

# One DNS label; a wildcard stands for one or more of them, so it never matches the bare domain.
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"


def origin_pattern(origin: str) -> str | re.Pattern:
    """A flask-cors origin that matches exactly what origin says: itself, or for `*.` any subdomain."""
    # flask-cors reads any string holding *, ?, $, [ ... as an unanchored regular expression: given
    # https://*.example.com it allowed https://xexample.com and refused https://app.example.com.
    if origin == "*":
        return origin
    scheme, wildcard, rest = origin.partition("://*.")
    if wildcard:
        subdomains = re.escape(scheme + "://") + rf"(?:{_LABEL}\.)+" + re.escape(rest)
        return re.compile(subdomains + r"\Z", re.IGNORECASE)
    return re.compile(re.escape(origin) + r"\Z", re.IGNORECASE)


def enable_cors(app: Flask, origins: tuple[str, ...], expose_headers: list[str]) -> None:
    """Answer preflights and add CORS headers for origins (settings has checked each one's shape)."""
    from flask_cors import CORS

    # Browsers send Authorization and Content-Type on embeddings calls; the preflight must allow both.
    # Scripts may read only exposed response headers (the truncation count is one they need).
    CORS(app, origins=[origin_pattern(origin) for origin in origins], allow_headers=["Authorization", "Content-Type"],
         expose_headers=expose_headers, methods=["GET", "POST", "OPTIONS"], max_age=600)
