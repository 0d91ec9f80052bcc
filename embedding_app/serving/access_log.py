"""gunicorn's logger: the client behind a trusted proxy, without the access lines of successful probes and scrapes."""

from __future__ import annotations

import ipaddress

from gunicorn.glogging import Logger

# Hit every few seconds by Docker, Kubernetes and Prometheus; logged only when they fail or at debug level.
QUIET_PATHS = ("/health", "/metrics")


def is_address(text: str) -> bool:
    """Whether text is a plain IPv4 or IPv6 address: anything else in the header is not logged as the client."""
    # The header is whatever the request carried: `1.2.3.4" "GET /admin` would forge a log line's fields.
    try:
        return getattr(ipaddress.ip_address(text), "scope_id", None) is None  # no %zone: free text after the %
    except ValueError:
        return False


class QuietProbesLogger(Logger):
    """Logs the proxied client's address and leaves routine probes and scrapes out, so that real traffic stays readable."""

    def access(self, resp, req, environ, request_time):
        """Log the request unless it is a successful probe or scrape (and the level is above debug)."""
        routine = req.path in QUIET_PATHS and (resp.status_code or 500) < 400
        if routine and self.cfg.loglevel.lower() != "debug":
            return
        super().access(resp, req, environ, request_time)

    def atoms(self, resp, req, environ, request_time):
        """gunicorn's log fields, with the client as the proxy saw it (X-Real-IP) when the peer is a trusted proxy."""
        atoms = super().atoms(resp, req, environ, request_time)
        client = environ.get("HTTP_X_REAL_IP", "")
        if is_address(client) and self._trusted(environ.get("REMOTE_ADDR", "")):
            atoms["h"] = client
        return atoms

    def _trusted(self, peer: str) -> bool:
        """Whether the peer is in gunicorn's forwarded_allow_ips (FORWARDED_ALLOW_IPS), as for its own forwarded headers."""
        allowed = self.cfg.forwarded_allow_ips
        if "*" in allowed:
            return True
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:  # a unix socket: gunicorn trusts those too
            return True
        return any(address in ipaddress.ip_network(network) for network in allowed)
