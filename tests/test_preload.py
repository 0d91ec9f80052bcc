"""The master's preload: imports the workers' libraries once, runs no torch, leaves forked workers able to run it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Runs in a fresh interpreter, as the master does: preload, then fork a "worker" that runs torch on two threads.
# The worker's parallel matmul hangs if the master started OpenMP's thread pool before forking.
MASTER = """
import json, logging, os, signal, sys, time
from embedding_app.config.settings import Settings
from embedding_app.runtime.thread_budget import SharedCores
from embedding_app.serving.preload import preload
from harness.engines import source_of

logging.basicConfig(level=logging.INFO, stream=sys.stderr)
source = source_of(sys.argv[1])
if "break-config" in sys.argv[3]:  # after resolving, which reads it too
    (source.path / "config.json").write_text("{not json")
preload(Settings(**json.loads(sys.argv[2])), [source], SharedCores(2, cores=2), logging.getLogger("master"))
if "run-torch-first" in sys.argv[3]:  # what the master must never do
    import torch
    torch.set_num_threads(2)
    torch.ones(4_000_000).mul(2).sum()
pid = os.fork()
if pid == 0:
    import torch
    torch.set_num_threads(2)
    torch.randn(1024, 1024) @ torch.randn(1024, 1024)
    torch.ones(4_000_000).mul(2).sum()
    os._exit(0)
deadline = time.monotonic() + float(sys.argv[4])
while not (done := os.waitpid(pid, os.WNOHANG))[0] and time.monotonic() < deadline:
    time.sleep(0.05)
if not done[0]:  # hung: killed, so that no process outlives the test
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
status = done[1] if done[0] else "hung"
keys = ("OMP_WAIT_POLICY", "ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY", "RAYON_NUM_THREADS")
print(json.dumps({"child": status, "modules": sorted(sys.modules), "environment": [os.environ.get(key) for key in keys]}))
"""


def run_master(model_dir: Path, actions: str = "", child_timeout: int = 60, **settings) -> tuple[dict, str]:
    """Run MASTER in a fresh interpreter with Settings(**settings) and its actions: its report and its log."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT)}
    for key in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY"):
        environ.pop(key, None)
    done = subprocess.run([sys.executable, "-c", MASTER, str(model_dir), json.dumps(settings), actions,
                           str(child_timeout)], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=child_timeout + 120, check=True)
    return json.loads(done.stdout.splitlines()[-1]), done.stderr


def test_preload_imports_torch_and_the_models_architecture_but_not_the_server_code(tiny_model_dir):
    report, log = run_master(tiny_model_dir)
    modules = set(report["modules"])
    assert {"torch", "transformers", "transformers.models.bert.modeling_bert"} <= modules
    # Server code stays for the workers to import: a rolling reload (SIGHUP) then brings new code.
    assert not {"embedding_app.inference.loader", "embedding_app.runtime.loading", "embedding_app.api"} & modules
    assert "libraries imported once for every worker" in log
    # auto's OpenMP waits, the small oneDNN caches and the tokenizer's threads were set before torch loaded.
    assert report["environment"] == ["PASSIVE", "16", "16", "1"]


def test_a_worker_forked_after_preload_runs_torch_on_two_threads(tiny_model_dir):
    report, _ = run_master(tiny_model_dir)
    assert report["child"] == 0


def test_the_fork_test_catches_a_master_that_ran_torch(tiny_model_dir):
    # The check above can fail: with a parallel torch op in the master first, the forked worker hangs.
    assert run_master(tiny_model_dir, "run-torch-first", child_timeout=15)[0]["child"] == "hung"


def test_numba_is_warmed_only_where_int8_may_run(tiny_model_dir):
    assert "numba" in run_master(tiny_model_dir, quantize="int8")[0]["modules"]
    assert "numba" not in run_master(tiny_model_dir, quantize="false")[0]["modules"]


def test_a_model_preload_cannot_read_is_left_to_the_workers(tiny_model_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    report, log = run_master(broken, "break-config")
    assert "preloading libraries in the master failed (JSONDecodeError" in log
    assert report["child"] == 0


def test_remote_code_is_not_imported_in_the_master(tiny_model_dir, tmp_path):
    remote = tmp_path / "remote"
    shutil.copytree(tiny_model_dir, remote)
    config = json.loads((remote / "config.json").read_text())
    (remote / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModel": "modeling_x.XModel"}}))
    assert "transformers.models.bert.modeling_bert" not in run_master(remote, trust_remote_code=True)[0]["modules"]
    # Without TRUST_REMOTE_CODE the worker loads transformers' own class, so the master imports it.
    assert "transformers.models.bert.modeling_bert" in run_master(remote)[0]["modules"]


def test_the_master_answers_livez_while_it_preloads(tiny_model_dir, output_dir):
    import requests

    from harness.server import GunicornServer, wait_until

    server = GunicornServer(output_dir / "gunicorn-preload-livez.log", MODEL_NAME=str(tiny_model_dir)).start(wait=False)
    try:
        def alive() -> bool:
            try:
                return requests.get(f"{server.health_url}/livez", timeout=3).status_code == 200
            except requests.RequestException:  # not listening yet, or slow while an import holds the GIL
                return False
        wait_until(alive, 60, "/livez to answer")
        assert "libraries imported once" not in server.log()  # still importing: about 3 s
        wait_until(lambda: len(server.ready_seconds()) == 2, 120, "both workers to load")
    finally:
        server.stop()
