"""README.md and docs/: every relative link and anchor resolves, and the README links every docs/ page."""

import re
from pathlib import Path

import pytest

from harness.server import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target): inline links; images and autolinks are not used in these pages.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)


def prose(path: Path) -> str:
    """The page without its fenced code blocks (a link-like string in code is not a link)."""
    return FENCE.sub("", path.read_text())


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of every heading of a markdown file."""
    return {slug(heading) for heading in re.findall(r"^#+ (.+)$", prose(path), re.MULTILINE)}


def relative_links(path: Path) -> list[str]:
    """The page's links that point into this repository (not to a web address)."""
    return [target for target in LINK.findall(prose(path)) if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


@pytest.mark.parametrize("page", DOCS, ids=lambda page: page.name)
def test_every_relative_link_points_to_a_file_and_anchor_that_exist(page):
    for target in relative_links(page):
        file, _, anchor = target.partition("#")
        resolved = (page.parent / file).resolve() if file else page
        assert resolved.exists(), f"{page.name}: {target} points to no file"
        if anchor:
            assert anchor in anchors(resolved), f"{page.name}: {target} points to no heading of {resolved.name}"


def test_readme_links_every_docs_page():
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in relative_links(ROOT / "README.md")}
    assert [page.name for page in DOCS[1:] if page not in linked] == []


def test_readme_is_a_short_front_door():
    assert len((ROOT / "README.md").read_text().splitlines()) < 200


# "400 `malformed_request`": a status and the code a page says a fault answers.
DOCUMENTED_CODE = re.compile(r"\b([1-5][0-9]{2}) `([a-z_]+)`")


def test_every_error_code_the_docs_name_is_in_the_catalogue_with_that_status():
    from embedding_app.api.error_catalogue import CATALOGUE

    named = [(page.name, int(status), code) for page in DOCS for status, code in DOCUMENTED_CODE.findall(page.read_text())]
    assert len(named) >= 10  # the error tables of README.md and docs/operations.md
    wrong = [(page, status, code) for page, status, code in named
             if code not in CATALOGUE or CATALOGUE[code].status != status]
    assert not wrong, f"codes the docs name that the catalogue lacks, or with another status: {wrong}"
