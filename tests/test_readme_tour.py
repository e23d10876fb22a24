"""The README's five-minute tour, run as written (with shorter budgets), so the README cannot drift.

The commands are read from the README's tour block and run in order by one bash script in a scratch
copy of the repository layout (`configs/` beside the scratch folder, as in a checkout). Only the sizes
change, through the substitutions below; each must still find its text in the README, so a reworded
tour fails here instead of silently running at full size.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from doc_scripts import bash_block, run_script, shortened

REPO = Path(__file__).resolve().parents[1]

#: (README text, what the test runs instead): smaller corpus, budgets and samples; nothing else changes.
SHORTER = [
    ("--tokens 300000", "--tokens 20000"),
    ("synth-tasks --out tasks/", "synth-tasks --out tasks/ --train 64 --dev 32 --test 32"),
    ("--set budget.steps=300", "--set budget.steps=3 --set batch.size=8 --set eval.batches=1"),
    ("--seeds 0,1", "--seeds 0 --set max_steps=2"),
    ("--samples 200", "--samples 8"),
    ("--task word_class", "--task word_class --samples 40 --set epochs=1 --set min_steps=2"),
]


def tour_commands(readme: str) -> list[str]:
    """The shell lines of the tour's code block."""
    return bash_block(readme, "## A five-minute tour")


def test_tour_block_is_found_and_starts_in_its_own_folder():
    commands = tour_commands((REPO / "README.md").read_text(encoding="utf-8"))
    assert commands[0] == "source .venv/bin/activate"
    assert commands[1].startswith("mkdir -p tour && cd tour")
    assert "/tour/" in (REPO / ".gitignore").read_text(encoding="utf-8").splitlines()


@pytest.mark.slow
def test_readme_tour_runs_in_order_and_writes_only_into_tour(tmp_path):
    script = shortened(tour_commands((REPO / "README.md").read_text(encoding="utf-8")), SHORTER, "the tour")
    (tmp_path / "configs").symlink_to(REPO / "configs")
    done = run_script(script, tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["configs", "tour"]
    tour = tmp_path / "tour"
    for made in ("runs/mlm40/model", "runs/mlm15/model", "ft", "attention.html", "heads", "probe",
                 "hf-model/config.json"):
        assert (tour / made).exists(), made
    assert "[UNK]" not in (tour / "attention.html").read_text(encoding="utf-8")  # text from the corpus itself
