"""Every relative link in README.md and docs/**/*.md points at an existing file (and, with a
#fragment into a Markdown file, at one of its headings, slugged as GitHub does)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
_LINK = re.compile(r"(?<!\!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading keeps its text
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.*)$", text, re.M)}


def broken_links(path: Path) -> list[str]:
    """The relative links of one Markdown file that point nowhere (code spans and blocks skipped)."""
    text = _CODE.sub("", _FENCE.sub("", path.read_text()))
    bad = []
    for m in _LINK.finditer(text):
        target = m.group(1) or m.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, fragment = target.partition("#")
        dest = path if not file_part else (path.parent / file_part).resolve()
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            bad.append(f"{target}: no heading #{fragment} in {dest.name}")
    return bad


@pytest.mark.parametrize("path", DOCS, ids=[p.relative_to(ROOT).as_posix() for p in DOCS])
def test_relative_links_resolve(path):
    assert broken_links(path) == []


def test_the_checker_flags_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "other.md").write_text("# Other doc\n\n## `run --backward`: gradients\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n[ok](other.md) [ok](other.md#run---backward-gradients) [ok](#page) [web](https://x.org/a)\n"
        "[gone](missing.md) [bad anchor](other.md#nope)\n`[in code](nowhere.md)`\n"
        "```\n[in a block](nowhere.md)\n```\n")
    assert broken_links(page) == ["missing.md: no such file", "other.md#nope: no heading #nope in other.md"]


def test_the_readme_opens_with_the_two_commands():
    """.ci/run and a new user rely on these two lines, in the README's first screen."""
    head = "\n".join((ROOT / "README.md").read_text().splitlines()[:30])
    assert "pip install -e . && fla-check run --op gla --modes recurrent,chunk" in head
    assert "python3 -m pytest -q" in head
