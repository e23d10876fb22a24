"""docs/tutorial-real-data.md run as written (with shorter budgets), so the walk-through cannot drift.

The commands are read from the page's code block and run in order by one bash script in a scratch copy of
the layout a reader has: `configs/` in the checkout, the real data in `../shared/data` beside it, so the
page's own paths (`../configs/...`, `DATA=../../shared/data`) are what runs. Only the sizes change, through
the substitutions below; each must still find its text on the page, so a reworded command fails here
instead of silently running at full size. Skipped where the real data is absent (CI has it).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from doc_scripts import bash_block, run_script, shortened

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "tutorial-real-data.md"

#: (page text, what the test runs instead): one small book, tiny vocabulary, a few steps and examples.
SHORTER = [
    ("--input $DATA/corpus/gutenberg $DATA/corpus/wikitext-2-raw/wiki.valid.raw",
     "--input $DATA/corpus/gutenberg/pg1656.txt"),
    ("--vocab-size 16000", "--vocab-size 1000"),
    ("--set data.shards=shards/",
     "--set data.shards=shards/ --set budget.steps=2 --set batch.size=4 --set data.seq_len=32 --set eval.batches=1"),
    ("--seeds 0,1,2", "--seeds 0 --set max_steps=1 --set max_length=32 --set eval_batch_size=512 "
                      "--set max_train_examples=64 --set save_model=false"),
    ("--set max_train_examples=4000", "--set max_train_examples=64"),
    ("--samples 500", "--samples 8 --max-length 32"),
]


def page_commands(page: str) -> list[str]:
    """The shell lines of the page's first bash block (under "## The commands")."""
    return bash_block(page, "## The commands")


def test_the_walk_through_starts_in_its_own_ignored_folder_and_reads_the_shared_data():
    commands = page_commands(PAGE.read_text(encoding="utf-8"))
    assert commands[0] == "source .venv/bin/activate"
    assert commands[1] == "mkdir -p tutorial && cd tutorial"
    assert commands[2].startswith("DATA=../../shared/data ")
    assert "/tutorial/" in (REPO / ".gitignore").read_text(encoding="utf-8").splitlines()


@pytest.mark.slow
def test_the_walk_through_runs_in_order_on_the_real_data(tmp_path, shared_data):
    script = shortened(page_commands(PAGE.read_text(encoding="utf-8")), SHORTER, "the page")  # no venv here
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "configs").symlink_to(REPO / "configs")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(shared_data)
    done = run_script(script, checkout, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in checkout.iterdir()) == ["configs", "tutorial"]
    out = checkout / "tutorial"
    for made in ("tok.json", "shards/manifest.json", "runs/tiny/model", "attention.html", "heads/heads.png",
                 "ft/sst2-not-pretrained/summary.json"):
        assert (out / made).exists(), made
    for task, methods in (("sst2", {"vanilla", "child_d"}), ("rte", {"vanilla", "child_d"})):
        summary = json.loads((out / "ft" / task / "summary.json").read_text(encoding="utf-8"))
        assert set(summary["methods"]) == methods
        assert {"majority", "bag_of_words"} <= set(summary["baselines"])  # the page quotes both
