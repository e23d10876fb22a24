"""Shell commands quoted in the docs, run by the tests that keep a page from drifting (README tour, tutorial)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def bash_block(text: str, heading: str) -> list[str]:
    """The shell lines of the first bash block after `heading`, continuation lines joined."""
    section = text[text.index(heading):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def shortened(commands: list[str], shorter: list[tuple[str, str]], page: str) -> str:
    """The commands after `source .venv/bin/activate` as one script, each (page text, test text) swapped in;
    a pair whose page text is gone fails, so the page and its test change together."""
    script = "\n".join(commands[1:])
    for original, replacement in shorter:
        assert original in script, f"{page} no longer contains {original!r}; update SHORTER"
        script = script.replace(original, replacement)
    return script


def run_script(script: str, cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    """Run `script` under bash -euo pipefail with `maskbench` meaning this checkout's code."""
    prelude = f'set -euo pipefail\nmaskbench() {{ "{sys.executable}" -m maskbench "$@"; }}\n'
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "MASKBENCH_PROGRESS": "0"}
    return subprocess.run(["bash", "-c", prelude + script], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
