"""The project's nginx proxy (deploy/nginx/start.sh) run locally in front of a GunicornServer (needs nginx on PATH)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Self

import requests

from .server import ROOT, GunicornServer, free_port, wait_until


class LocalProxy:
    """nginx rendered from deploy/nginx by start.sh, in front of `server`; settings as in the image's environment."""

    def __init__(self, server: GunicornServer, log_path: Path, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Under /tmp and world-readable: nginx started as root runs its workers as nobody, who must reach the sockets.
        run_dir = tempfile.mkdtemp(prefix="embedding-proxy-")
        os.chmod(run_dir, 0o755)
        self.run_dir = run_dir
        self.log_path = log_path
        # nginx lives in /usr/sbin, which a non-login PATH may lack.
        path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
        self.env = {**os.environ, "PATH": path, "PROXY_PORT": str(self.port), "PROXY_UPSTREAM": f"127.0.0.1:{server.port}",
                    "PROXY_HEALTH_UPSTREAM": f"127.0.0.1:{server.health_port}", "PROXY_RUN_DIR": str(run_dir),
                    "EMBEDDING_SERVER_WORKERS": str(server.workers), **env}
        self.process: subprocess.Popen | None = None

    def start(self) -> LocalProxy:
        """Render the configuration, start nginx and wait until it answers."""
        if shutil.which("nginx", path=self.env["PATH"]) is None:
            raise RuntimeError("nginx is not installed (apt-get install nginx gettext-base)")
        self.log_file = open(self.log_path, "w")  # noqa: SIM115 - nginx writes it until stop() closes it
        self.process = subprocess.Popen([str(ROOT / "deploy" / "nginx" / "start.sh")], env=self.env,
                                        stdout=self.log_file, stderr=subprocess.STDOUT)
        wait_until(self._answers, 15, f"nginx on {self.url}")
        return self

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"nginx exited with {self.process.returncode}:\n{self.log()}")
        try:
            return requests.get(f"{self.url}/health/proxy", timeout=1).ok
        except requests.ConnectionError:
            return False

    def log(self) -> str:
        """Everything nginx has written so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Stop nginx at once (SIGTERM: fast shutdown)."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        self.log_file.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
