"""gunicorn's logger without the access lines of successful health probes and metric scrapes."""

from __future__ import annotations

from gunicorn.glogging import Logger

# Hit every few seconds by Docker, Kubernetes and Prometheus; logged only when they fail or at debug level.
QUIET_PATHS = ("/health", "/metrics")


class QuietProbesLogger(Logger):
    """Leaves routine probe and scrape requests out of the access log, so that real traffic stays readable."""

    def access(self, resp, req, environ, request_time):
        """Log the request unless it is a successful probe or scrape (and the level is above debug)."""
        routine = req.path in QUIET_PATHS and (resp.status_code or 500) < 400
        if routine and self.cfg.loglevel.lower() != "debug":
            return
        super().access(resp, req, environ, request_time)
