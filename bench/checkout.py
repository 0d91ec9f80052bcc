"""An older commit of this repository checked out beside it (a temporary git worktree), to benchmark against."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)


def missing_commit(repo: Path, commit: str) -> str | None:
    """Why commit cannot be checked out from repo (no git, not a repository, unknown commit), or None."""
    if shutil.which("git") is None:
        return "git is not installed"
    found = _git(repo, "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}")
    if found.returncode:
        return f"commit {commit} is not in {repo} ({found.stderr.strip() or 'unknown commit'})"
    return None


@contextmanager
def worktree(repo: Path, commit: str):
    """A detached git worktree of commit in a temporary directory, removed (and pruned) on exit."""
    parent = Path(tempfile.mkdtemp(prefix="bench-base-"))
    path = parent / commit
    added = _git(repo, "worktree", "add", "--detach", str(path), commit)
    if added.returncode:
        shutil.rmtree(parent, ignore_errors=True)
        raise RuntimeError(f"git worktree add {commit} failed: {added.stderr.strip()}")
    try:
        yield path
    finally:
        _git(repo, "worktree", "remove", "--force", str(path))
        shutil.rmtree(parent, ignore_errors=True)
        _git(repo, "worktree", "prune")
