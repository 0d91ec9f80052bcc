"""The probe's choices kept on disk, keyed by CPU, torch, model and its weights, threads and code, so that later starts
skip the probe (and int8's calibration).

Workers that start together take turns on a file lock: the first one probes (while the others wait, so they do
not disturb its timings) and the rest read its answer.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import logging
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from embedding_app.config.settings import kernel_environment

from .kernel_choice import Choice

log = logging.getLogger(__name__)
# The code that decides which mode and kernels win (the modes' layers, the probe): a server upgraded in place, or
# a faster int8 layer, must probe again rather than keep an answer measured on other code.
CODE = Path(__file__).parent
LOCK_WAIT = 60  # seconds a worker waits for another one's probe before probing without the cache
# Every upgrade, model, thread count and CPU adds an entry, and every start reads the whole file: keep the newest ones
# (each is a few kB, mostly int8's outlier columns), enough for many models and settings on one machine.
MAX_ENTRIES = 64
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def cpu_identity() -> str:
    """The CPU model and feature flags as the kernel reports them."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    return f"{fields.get('model name', '?')} | {fields.get('flags', fields.get('Features', ''))}"


@functools.cache
def code_identity(directory: Path = CODE) -> str:
    """A digest of the inference code's source files and data (the probe and calibration texts)."""
    digest = hashlib.sha256()
    for path in sorted(path for path in directory.rglob("*") if path.suffix in (".py", ".txt")):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def weights_stamp(directory: Path) -> list[list]:
    """Name, size and modification time of each weight file of a model directory: new weights make a new key."""
    # The int8 outlier columns cached with a choice are the weights' own: stale ones would cost fidelity, not speed.
    try:
        files = [path for path in Path(directory).iterdir() if path.suffix in WEIGHT_SUFFIXES]
        return sorted([path.name, path.stat().st_size, path.stat().st_mtime_ns] for path in files)
    except OSError:
        return []


def cache_key(*parts: object) -> str:
    """A short digest of everything a choice depends on: the caller's parts plus CPU, torch and kernel settings."""
    import torch

    identity = [code_identity(), cpu_identity(), torch.__version__, torch.get_num_threads(),
                kernel_environment(), *parts]
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:32]


class ChoiceCache:
    """A JSON file of key -> Choice in a directory; an empty directory name keeps nothing."""

    def __init__(self, directory: str):
        self.directory = Path(directory).expanduser() if directory else None
        self.path = self.directory / "kernel-choices.json" if self.directory else None

    @contextmanager
    def locked(self):
        """Hold the cache's lock (one probing worker at a time); without a usable directory, hold nothing."""
        handle = self._lock_file()
        if handle is None:
            yield
            return
        deadline = time.monotonic() + LOCK_WAIT
        try:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        log.warning("pid %d: %s stayed locked for %ds; probing anyway", os.getpid(), self.path, LOCK_WAIT)
                        break
                    time.sleep(0.05)
            yield
        finally:
            handle.close()  # closing releases the lock

    def _lock_file(self):
        if self.directory is None:
            return None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            return open(self.directory / "kernel-choices.lock", "a")
        except OSError as exc:
            log.warning("pid %d: kernel choices not cached (%s); every start probes", os.getpid(), exc)
            self.directory = self.path = None
            return None

    def _entries(self) -> dict:
        try:
            entries = json.loads(self.path.read_text())
        except (OSError, ValueError, AttributeError):
            return {}
        return entries if isinstance(entries, dict) else {}

    def get(self, key: str) -> Choice | None:
        """The choice stored under key, or None."""
        entry = self._entries().get(key) if self.path else None
        try:
            return Choice(**entry, cached=True) if isinstance(entry, dict) else None
        except TypeError:  # written by another version of Choice
            return None

    def put(self, key: str, choice: Choice) -> None:
        """Store choice under key (atomically: readers never see half a file)."""
        if self.path is None:
            return
        entries = self._entries()
        entries.pop(key, None)  # re-inserted last: the newest entries are the ones kept
        entries[key] = {name: value for name, value in asdict(choice).items() if name != "cached"}
        entries = dict(list(entries.items())[-MAX_ENTRIES:])
        try:
            with tempfile.NamedTemporaryFile("w", dir=self.directory, delete=False, suffix=".tmp") as out:
                json.dump(entries, out, indent=1)
            os.replace(out.name, self.path)
        except OSError as exc:
            log.warning("pid %d: cannot write %s (%s)", os.getpid(), self.path, exc)
