"""The README's "Guarantees" section names the tests that hold maskbench to each promise: each named
file and test must exist, so a renamed or deleted test cannot leave a promise that nothing checks."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def named_tests(readme: str) -> list[tuple[str, str | None]]:
    """(test file, test name pattern or None) for every test the Guarantees section names."""
    section = readme[readme.index("## Guarantees"):]
    section = section[:section.index("\n## ", 1)]
    section = re.sub(r"```.*?```", "", section, flags=re.S)  # the example session
    named, current = [], None
    for token in re.findall(r"`([^`]+)`", section):
        if token.startswith("tests/"):
            current, _, name = token.partition("::")
            named.append((current, name or None))
        elif token.startswith("test_") and current is not None:
            named.append((current, token))
    return named


def test_every_test_the_guarantees_name_exists():
    named = named_tests((REPO / "README.md").read_text(encoding="utf-8"))
    assert len({file for file, _ in named}) >= 8
    for file, pattern in named:
        path = REPO / file
        assert path.is_file(), f"README Guarantees name {file}, which does not exist"
        if pattern is not None:
            tests = re.findall(r"^def (test_\w+)", path.read_text(encoding="utf-8"), re.M)
            assert fnmatch.filter(tests, pattern), f"README Guarantees name {file}::{pattern}, which matches no test"
