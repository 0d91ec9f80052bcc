"""A Hub model is fetched once, by the gunicorn master before it forks, however many workers there are."""

from __future__ import annotations

from harness.server import GunicornServer

# Wraps snapshot_download in the master's interpreter (workers are forks of it) to log the pid of each call.
SITECUSTOMIZE = """
import os, huggingface_hub
_download = huggingface_hub.snapshot_download
def snapshot_download(*args, **kwargs):
    with open(os.environ["FETCH_LOG"], "a") as log:
        log.write(f"{os.getpid()}\\n")
    return _download(*args, **kwargs)
huggingface_hub.snapshot_download = snapshot_download
"""


def test_workers_share_one_fetch_by_the_master(tmp_path, hub_cache, output_dir):
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    fetch_log = tmp_path / "fetches.txt"
    with GunicornServer(output_dir / "gunicorn-hub-once.log", workers=2, MODEL_NAME="test-org/tiny-bert",
                        HF_HOME=str(hub_cache), PYTHONPATH=str(tmp_path / "hooks"), FETCH_LOG=str(fetch_log),
                        QUANTIZE="false") as server:
        pids = fetch_log.read_text().split()
        log = server.log()
    assert pids == [str(server.process.pid)]
    assert log.count(f"loaded test-org/tiny-bert from {hub_cache.resolve()}") == 2
