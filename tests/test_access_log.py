"""The access log names the client a trusted proxy reports (X-Real-IP), and only a trusted proxy."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from gunicorn.config import Config

from embedding_app.serving.access_log import QuietProbesLogger


def client_logged(peer: str, real_ip: str | None, allowed: str) -> str:
    """The h (client) field gunicorn would log for a request from peer carrying X-Real-IP, under FORWARDED_ALLOW_IPS."""
    config = Config()
    config.set("forwarded_allow_ips", allowed)
    environ = {"REMOTE_ADDR": peer, "REQUEST_METHOD": "GET", "RAW_URI": "/v1/models", "SERVER_PROTOCOL": "HTTP/1.1"}
    if real_ip:
        environ["HTTP_X_REAL_IP"] = real_ip
    response = SimpleNamespace(status="200 OK", headers=[], sent=10)
    request = SimpleNamespace(headers=[])
    return QuietProbesLogger(config).atoms(response, request, environ, timedelta(milliseconds=3))["h"]


@pytest.mark.parametrize("peer, allowed", [("127.0.0.1", "127.0.0.1,::1"), ("10.89.0.5", "*"),
                                           ("10.89.0.5", "10.89.0.0/16"), ("", "127.0.0.1")])
def test_trusted_proxy_reports_the_client(peer, allowed):
    assert client_logged(peer, "203.0.113.7", allowed) == "203.0.113.7"


@pytest.mark.parametrize("peer, allowed", [("10.89.0.5", "127.0.0.1,::1"), ("198.51.100.2", "10.89.0.0/16")])
def test_anyone_else_cannot_choose_the_logged_address(peer, allowed):
    assert client_logged(peer, "203.0.113.7", allowed) == peer


def test_without_a_proxy_the_peer_is_logged():
    assert client_logged("127.0.0.1", None, "127.0.0.1") == "127.0.0.1"


@pytest.mark.parametrize("forged", ['1.2.3.4" "GET /admin', "1.2.3.4 ", "fe80::1%eth0", "localhost", "",
                                    "1.2.3.4, 5.6.7.8", "\u0661.2.3.4", "1.2.3.4\nGET /admin"])
def test_a_header_that_is_not_an_address_is_not_logged_even_from_a_trusted_proxy(forged):
    assert client_logged("127.0.0.1", forged, "127.0.0.1,::1") == "127.0.0.1"


@pytest.mark.parametrize("address", ["203.0.113.7", "2001:db8::7", "::ffff:203.0.113.7"])
def test_ipv4_and_ipv6_clients_are_logged_as_sent(address):
    assert client_logged("::1", address, "127.0.0.1,::1") == address
