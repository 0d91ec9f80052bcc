"""What the gunicorn master does once at start-up: check the ports, clean up after killed masters, say what it serves."""

from __future__ import annotations

import errno
import glob
import os
import shutil
import socket
import sys
import tempfile

from embedding_app.config.settings import Settings, settings_warnings
from embedding_app.inference.model_source import (
    ModelSource,
    ModelSourceError,
    resolve_models,
)

METRICS_PREFIX = "embedding-metrics-"


def check_port_free(host: str, port: int, key: str = "EMBEDDING_SERVER_PORT") -> None:
    """Exit at once, naming the settings, if another process listens on host:port (gunicorn retries for 5 s)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as exc:
            reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound: {exc.strerror}"
            sys.exit(f"configuration error: port {port} on {host} {reason} ({key}="
                     f"{port}, EMBEDDING_SERVER_HOST={host}); stop the other server or choose another port")


def remove_dead_masters_metrics(parent: str | None) -> None:
    """Delete the metrics directories of masters that are gone (the pid in the name), left by a kill -9."""
    # on_exit removes a master's own directory, but a killed master runs no hook: each kill would leave one.
    # A pid in use (by anyone: kill reports EPERM) keeps its directory; a reused pid only delays the removal.
    for path in glob.glob(os.path.join(parent or tempfile.gettempdir(), f"{METRICS_PREFIX}*-*")):
        pid = os.path.basename(path)[len(METRICS_PREFIX):].partition("-")[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass


def make_metrics_dir(parent: str | None) -> str:
    """This master's metrics directory, named after its pid so that each server's directory is recognisable."""
    return tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{os.getpid()}-", dir=parent)


def resolve_sources(settings: Settings, log) -> list[ModelSource]:
    """Resolve (for a Hub id, download) every model of MODEL_NAME and log where each comes from; exit on failure."""
    try:
        sources = resolve_models(settings.models, settings.hf_token)
    except ModelSourceError as exc:
        log.error("cannot load a model of MODEL_NAME: %s", exc)
        sys.exit(1)
    for source in sources:
        log.info("model %s from %s%s", source.served_name, source.path,
                 f" (also answers to {', '.join(source.aliases)})" if source.aliases else "")
    return sources


def log_configuration(settings: Settings, crowded: str | None, log) -> None:
    """Warn about doubtful settings (and workers' threads that outnumber the cores); say who may call and from where."""
    for warning in settings_warnings():
        log.warning("configuration: %s", warning)
    if crowded:
        log.warning("%s", crowded)
    keys = len(settings.api_keys)
    log.info("API key %s; CORS %s", f"required ({keys} configured)" if keys else "not required",
             ", ".join(settings.cors_allow_origins) or "off")
