"""The README stays a door and the docs stay connected (issue 15).

The README is at most 250 lines (the rest lives in docs/); every relative link in README.md and docs/*.md
leads to a file of the repository, and to a heading of it where the link names one (GitHub's anchors);
and the README's test command is exactly the one `.ci/run` runs, so CI tests what the README promises.
"""

import re
import unicodedata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)  # code blocks hold no links
    return LINK.findall(text)


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings: lower case, punctuation but `-` and `_` dropped,
    spaces to `-`."""
    found = set()
    for line in page.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"#{1,6}\s+(.*)", line)
        if heading and not line.startswith("#!"):
            text = heading.group(1).strip().lower()
            text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
            found.add(text.replace(" ", "-"))
    return found


def test_readme_is_a_door():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move reference material into docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_relative_links_lead_somewhere(page):
    broken = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.relative_to(REPO)}")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


def test_readme_test_command_is_what_ci_runs():
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.strip().startswith("#")]
    command = ci[-1]
    assert command.startswith("python -m pytest"), f".ci/run's last command is {command!r}"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```[^\n]*\n(.*?)```", readme, flags=re.S)
    commands = [part.strip() for block in blocks for line in block.splitlines() for part in line.split("&&")]
    assert command in commands, f"the README shows no `{command}` (what .ci/run runs)"
