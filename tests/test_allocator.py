"""Worker malloc: large tensors on transparent huge pages where glibc and the kernel allow it, never forced."""

from __future__ import annotations

import os

import pytest

from embedding_app.runtime.allocator import HUGE_PAGES, with_huge_pages
from harness.server import GunicornServer


@pytest.fixture
def thp(tmp_path):
    """A transparent_hugepage/enabled file saying madvise (the kernel default on most distributions)."""
    setting = tmp_path / "enabled"
    setting.write_text("always [madvise] never\n")
    return setting


def glibc_with_tunable() -> bool:
    import platform

    libc, version = platform.libc_ver()
    return libc == "glibc" and tuple(map(int, version.split(".")[:2])) >= (2, 35)


@pytest.mark.skipif(not glibc_with_tunable(), reason="the hugetlb tunable needs glibc 2.35 or newer")
def test_the_tunable_is_added_to_the_environment_and_to_other_tunables(thp):
    assert with_huge_pages({"PATH": "/bin"}, str(thp)) == {"PATH": "/bin", "GLIBC_TUNABLES": HUGE_PAGES}
    assert with_huge_pages({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, str(thp))["GLIBC_TUNABLES"] == (
        f"glibc.malloc.arena_max=2:{HUGE_PAGES}")


def test_nothing_changes_when_done_chosen_or_impossible(thp, tmp_path):
    assert with_huge_pages({"GLIBC_TUNABLES": HUGE_PAGES}, str(thp)) is None  # already restarted with it
    assert with_huge_pages({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, str(thp)) is None  # an operator's choice
    never = tmp_path / "never"
    never.write_text("always madvise [never]\n")
    assert with_huge_pages({}, str(never)) is None  # THP switched off in the kernel
    assert with_huge_pages({}, str(tmp_path / "missing")) is None  # no THP at all


def test_workers_run_with_huge_pages_where_this_machine_allows_them(output_dir, tiny_model_dir):
    expected = with_huge_pages({key: value for key, value in os.environ.items() if key != "GLIBC_TUNABLES"})
    with GunicornServer(output_dir / "gunicorn-allocator.log", workers=1, MODEL_NAME=str(tiny_model_dir)) as server:
        [pid] = server.worker_pids()
        with open(f"/proc/{pid}/environ") as file:
            environ = dict(line.split("=", 1) for line in file.read().split("\0") if "=" in line)
    assert (HUGE_PAGES in environ.get("GLIBC_TUNABLES", "")) == (expected is not None)
