"""Reports from a results folder: mean ± std with the best in bold, self-contained HTML, failed cells, claims."""

from __future__ import annotations

import re

import pytest

import fake_stages
from maskbench.experiments.report import collect, evaluate_claim, fmt_mean_std, terminal_table, write_report
from maskbench.experiments.runner import run_experiment
from maskbench.experiments.spec import ClaimSpec, parse_spec


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("exp")
    spec = parse_spec({
        "experiment": {"name": "unit", "paper": "A paper (2022)", "findings": "Higher rates help."},
        "base": {"pretrain": {"steps": 4, "objective": {"mask_rate": 0.15}},
                 "finetune": {"tasks": ["synth"], "methods": ["vanilla", "child_d"], "seeds": [0, 1, 2]},
                 "probe": {"enabled": True}},
        "series": [
            {"name": "rates", "axes": [{"name": "rate", "values": {"pretrain.objective.mask_rate": [0.15, 0.3, 0.4]}}]},
            {"name": "broken", "axes": [{"name": "rate", "values": {"pretrain.objective.mask_rate": [0.5]}},
                                        {"name": "fail", "values": {"pretrain.fail": [True]}}]},
        ],
        "claims": [
            {"text": "40% beats 15%", "better": {"pretrain.objective.mask_rate": 0.4},
             "worse": {"pretrain.objective.mask_rate": 0.15}},
            {"text": "15% beats 40%", "better": {"pretrain.objective.mask_rate": 0.15},
             "worse": {"pretrain.objective.mask_rate": 0.4}},
            {"text": "Child-Tuning-D beats vanilla", "better_method": "child_d", "worse_method": "vanilla"},
            {"text": "lower loss at 15%", "metric": "pretrain.val_loss", "lower_is_better": True,
             "better": {"pretrain.objective.mask_rate": 0.15}, "worse": {"pretrain.objective.mask_rate": 0.4}},
            {"text": "nothing at 90%", "better": {"pretrain.objective.mask_rate": 0.9},
             "worse": {"pretrain.objective.mask_rate": 0.15}},
        ],
    })
    run_experiment(spec, out, stages=fake_stages.STAGES, progress=False)
    return out


def test_mean_std_format():
    assert fmt_mean_std([0.8, 0.82, 0.84]) == "82.0 ± 2.0"
    assert fmt_mean_std([0.5]) == "50.0"
    assert fmt_mean_std([]) == "–"


def test_markdown_has_mean_std_and_bold_best(results_dir):
    md = (results_dir / "report.md").read_text()
    results = collect(results_dir)
    best = max(results.cells, key=lambda c: sum(c.scores.get(("synth", "vanilla"), {0: 0}).values()))
    values = list(best.scores[("synth", "vanilla")].values())
    assert f"**{fmt_mean_std(values)}**" in md
    rows = [line for line in md.splitlines() if line.startswith("| ") and "±" in line]
    assert len(rows) == 3  # the healthy cells; the failed one has no score
    assert sum(line.count("**") for line in rows) == 2 * 2  # one bold per method column


def test_failed_cell_is_marked(results_dir):
    md = (results_dir / "report.md").read_text()
    html = (results_dir / "report.html").read_text()
    assert "✗ failed" in md and "pretraining diverged (fake)" in md
    assert 'class=failed' in html


def test_html_is_self_contained(results_dir):
    html = (results_dir / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "url(" not in html and "@import" not in html
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) >= 3  # score vs rate, loss curves, probe curves
    assert all(len(img) > 1000 for img in images)
    assert "<b>" in html and "±" in html


def test_markdown_plots_exist(results_dir):
    md = (results_dir / "report.md").read_text()
    for name in re.findall(r"\]\((report_files/[^)]+\.png)\)", md):
        assert (results_dir / name).stat().st_size > 1000


def test_report_lists_machine_timings_and_configs(results_dir):
    md = (results_dir / "report.md").read_text()
    assert "## Machine" in md and "torch" in md and "cores" in md
    assert "Wall time per stage" in md and "pretrain total" in md
    assert md.count("<details>") == 4 and "mask_rate = 0.4" in md


def test_claims_are_computed_from_results(results_dir):
    md = (results_dir / "report.md").read_text()
    results = collect(results_dir)
    verdict = evaluate_claim(results, ClaimSpec(text="x", better={"pretrain.objective.mask_rate": 0.4},
                                                worse={"pretrain.objective.mask_rate": 0.15}))
    assert verdict.verdict == "agrees" and verdict.better_mean > verdict.worse_mean
    assert "**agrees** — 40% beats 15%" in md
    assert "**disagrees** — 15% beats 40%" in md
    assert "**agrees** — Child-Tuning-D beats vanilla" in md
    assert "**agrees** — lower loss at 15%" in md
    assert "**no data** — nothing at 90%" in md


def test_claim_within_noise_is_inconclusive(results_dir):
    results = collect(results_dir)
    for cell in results.cells:  # make the two sides differ by less than the seed noise
        for seeds in cell.scores.values():
            for seed in seeds:
                seeds[seed] = 0.7 + (0.05 if seed % 2 else -0.05) + (0.001 if cell.assignment.get(
                    "pretrain.objective.mask_rate") == 0.4 else 0.0) * (seed + 1)
    verdict = evaluate_claim(results, ClaimSpec(text="x", better={"pretrain.objective.mask_rate": 0.4},
                                                worse={"pretrain.objective.mask_rate": 0.15}))
    assert verdict.verdict in ("agrees", "inconclusive")
    verdict = evaluate_claim(results, ClaimSpec(text="x", better={"pretrain.objective.mask_rate": 0.3},
                                                worse={"pretrain.objective.mask_rate": 0.15}))
    assert verdict.verdict == "inconclusive" and "no difference" in verdict.detail


def test_the_same_difference_on_every_seed_is_inconclusive(results_dir):
    """A paired t-test is undefined without spread; the verdict does not count that as significant."""
    results = collect(results_dir)
    for cell in results.cells:
        rate = cell.assignment.get("pretrain.objective.mask_rate")
        for seeds in cell.scores.values():
            for seed in seeds:
                seeds[seed] = 0.5 + 0.01 * seed + (0.03 if rate == 0.4 else 0.0)
    verdict = evaluate_claim(results, ClaimSpec(text="x", better={"pretrain.objective.mask_rate": 0.4},
                                                worse={"pretrain.objective.mask_rate": 0.15}))
    assert verdict.verdict == "inconclusive"
    assert "same amount" in verdict.detail and "p =" not in verdict.detail


def test_report_can_be_rebuilt_and_terminal_table(results_dir):
    before = (results_dir / "report.md").read_text()
    write_report(results_dir)
    assert (results_dir / "report.md").read_text() == before
    table = terminal_table(results_dir)
    assert "synth" in table and "±" in table and "*" in table


def test_report_handles_tables_and_lists_as_axis_values(tmp_path):
    spec = parse_spec({
        "experiment": {"name": "tables"},
        "base": {"pretrain": {"objective": {"mask_rate": 0.15}}, "finetune": {"seeds": [0, 1]}},
        "axes": [{"name": "objective", "labels": ["a", "b", "c"],
                  "values": {"pretrain.objective": [{"mask_rate": 0.15}, {"mask_rate": 0.3}, {"mask_rate": 0.4}]}},
                 {"name": "replace", "values": {"pretrain.replace": [[0.8, 0.1, 0.1], [1.0, 0.0, 0.0]]}}],
    })
    run_experiment(spec, tmp_path, stages=fake_stages.STAGES, progress=False)
    md = (tmp_path / "report.md").read_text()
    assert "| objective | replace |" in md and md.count("±") >= 6


def _with_chance(results_dir, near: bool):
    """The results with a majority baseline of 0.5 on `synth`, and every score at chance when `near`."""
    results = collect(results_dir)
    results.baselines = {"synth": {"majority": 0.5, "bag_of_words": 0.62}}
    if near:
        for cell in results.cells:
            for (task, method), seeds in cell.scores.items():
                for seed in seeds:
                    seeds[seed] = 0.5 + (0.004 if cell.assignment.get("pretrain.objective.mask_rate") == 0.4
                                         else 0.0) + 0.003 * ((seed % 3) - 1)
    return results


def test_a_claim_with_both_sides_at_chance_is_inconclusive_never_agrees(results_dir):
    results = _with_chance(results_dir, near=True)
    for kind in ("greater", "similar"):
        verdict = evaluate_claim(results, ClaimSpec(text="x", kind=kind, better={"pretrain.objective.mask_rate": 0.4},
                                                    worse={"pretrain.objective.mask_rate": 0.15}))
        assert verdict.verdict == "inconclusive (both at chance)", verdict.detail
        assert "within seed noise of chance (majority class 50.00)" in verdict.detail
    far = _with_chance(results_dir, near=False)  # the fake scores are far above 0.5: a real verdict
    verdict = evaluate_claim(far, ClaimSpec(text="x", better={"pretrain.objective.mask_rate": 0.4},
                                            worse={"pretrain.objective.mask_rate": 0.15}))
    assert verdict.verdict == "agrees"


def test_score_tables_show_baselines_and_flag_cells_at_chance(results_dir):
    from maskbench.experiments.report.tables import CHANCE_MARK, score_tables

    table = score_tables(_with_chance(results_dir, near=True))[0]
    assert table.rows[-2][0] == "(majority class)" and table.rows[-2][-1] == "50.0"
    assert table.rows[-1][0] == "(bag of words)" and table.rows[-1][-1] == "62.0"
    assert all(CHANCE_MARK in v for row in table.rows[:-2] for v in row[1:] if "±" in v)
    assert "majority class" in table.note and "bag of words" in table.note and CHANCE_MARK in table.note
    assert not any(CHANCE_MARK in v for row in score_tables(_with_chance(results_dir, near=False))[0].rows
                   for v in row)


def test_claims_compare_one_method_unless_they_pool(results_dir):
    """Without a method the claim reads the vanilla column the reader sees; `pool = true` pools them."""
    results = collect(results_dir)
    claim = dict(text="x", better={"pretrain.objective.mask_rate": 0.4}, worse={"pretrain.objective.mask_rate": 0.15})
    one = evaluate_claim(results, ClaimSpec(**claim))
    vanilla = evaluate_claim(results, ClaimSpec(**claim, method="vanilla"))
    pooled = evaluate_claim(results, ClaimSpec(**claim, pool=True))
    assert one.better_mean == vanilla.better_mean and "vanilla fine-tuning" in one.detail
    assert "paired over 3 runs" in one.detail and "paired over 6 runs" in pooled.detail
    assert pooled.better_mean != one.better_mean


def test_first_screen_says_in_plain_words_what_was_found_and_what_cannot_be_shown(results_dir):
    from maskbench.experiments.report import evaluate_claims, plain_words

    md = (results_dir / "report.md").read_text()
    assert md.index("## In plain words") < md.index("## What the paper found")
    lines = plain_words(evaluate_claims(collect(results_dir)))
    assert lines[0].startswith("Found: 40% beats 15%, as claimed; the opposite of \"15% beats 40%\"")
    assert lines[-1] == "No results yet for: nothing at 90%."
    at_chance = _with_chance(results_dir, near=True)
    lines = plain_words([evaluate_claim(at_chance, ClaimSpec(text="40% beats 15%",
                                                             better={"pretrain.objective.mask_rate": 0.4},
                                                             worse={"pretrain.objective.mask_rate": 0.15}))])
    assert lines == ["Found: none of the claims was settled by this run.",
                     "Cannot show at this scale: 40% beats 15% (both sides at chance: the models did not learn "
                     "the task)."]


def test_markdown_escapes_the_specs_text(tmp_path):
    hostile = "<script>alert(1)</script>"
    image = "<img src=x onerror=alert(2)>"
    spec = parse_spec({
        "experiment": {"name": "unit", "description": hostile, "findings": f"see [this](javascript:alert(3)) {image}"},
        "base": {"pretrain": {"steps": 2, "objective": {"mask_rate": 0.15}},
                 "finetune": {"tasks": ["synth"], "methods": ["vanilla"], "seeds": [0, 1]}},
        "axes": [{"name": "rate", "labels": [image, "plain"],
                  "values": {"pretrain.objective.mask_rate": [0.15, 0.4]}}],
        "claims": [{"text": hostile, "better": {"pretrain.objective.mask_rate": 0.4},
                    "worse": {"pretrain.objective.mask_rate": 0.15}}],
    })
    run_experiment(spec, tmp_path, stages=fake_stages.STAGES, progress=False)
    for name in ("report.md", "report.html"):
        text = (tmp_path / name).read_text()
        assert "<script>alert" not in text and "<img src=x" not in text, name
    markdown = (tmp_path / "report.md").read_text()
    assert "[this](javascript:" not in markdown and "\\[this\\](javascript:" in markdown  # not a link
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markdown and "&lt;img src=x onerror=alert(2)&gt;" in markdown


def test_transfer_scores_are_rows_of_their_own_and_claims_can_name_them(tmp_path):
    """A fine-tuning stage's transfer scores (Child-Tuning's generalisation tests) become their own task
    rows, which a claim selects by name."""
    spec = parse_spec({
        "experiment": {"name": "transfer", "paper": "P", "findings": "F"},
        "base": {"finetune": {"tasks": ["synth"], "methods": ["vanilla", "child_d"], "seeds": [0, 1, 2],
                              "transfer": {"eval_tasks": ["other"]}}},
        "claims": [{"text": "D transfers better", "better_method": "child_d", "worse_method": "vanilla",
                    "task": "other (domain transfer from synth)"}],
    })
    run_experiment(spec, tmp_path, stages=fake_stages.STAGES, progress=False)
    results = collect(tmp_path)
    scores = results.cells[0].scores
    assert set(scores) == {(t, m) for t in ("synth", "other (domain transfer from synth)") for m in ("vanilla", "child_d")}
    verdict = evaluate_claim(results, spec.claims[0])
    assert verdict.verdict == "agrees" and verdict.better_mean - verdict.worse_mean > 0.03


@pytest.mark.parametrize("cells", [3, 20, 30])
def test_loss_curves_stay_readable_with_many_cells(tmp_path, cells):
    """One legend entry and one distinct colour per cell; the legend sits beside the axes (never over a
    curve) and inside the saved figure."""
    import json

    from maskbench.experiments.report.collect import CellResult, Results
    from maskbench.experiments.report.plots import _png, loss_curves_figure

    results = Results(out=tmp_path, index={}, cells=[])
    for i in range(cells):
        folder = tmp_path / f"cell{i}"
        (folder / "run").mkdir(parents=True)
        records = [{"step": s, "kind": kind, "loss": 5.0 - s / 10 + i / 100} for s in (1, 2, 3)
                   for kind in ("train", "eval")]
        (folder / "run" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        results.cells.append(CellResult(id=f"c{i}", label=f"mask rate {i}", labels={}, assignment={}, series=[],
                                        status="done", error=None, config={}, pretrain={"steps": 3},
                                        pretrain_dir=folder))
    plt, fig, ax = loss_curves_figure(results)
    try:
        legend = ax.get_legend()
        assert [t.get_text() for t in legend.get_texts()] == [f"mask rate {i}" for i in range(cells)]
        colours = [tuple(handle.get_color()) for handle in legend.legend_handles]
        assert len(set(colours)) == cells
        lines = ax.get_lines()
        assert len(lines) == 2 * cells and {tuple(line.get_color()) for line in lines} == set(colours)
        fig.tight_layout()
        fig.canvas.draw()
        box, axes = legend.get_window_extent(), ax.get_window_extent()
        assert box.x0 >= axes.x1, "the legend overlaps the axes"
        figure = fig.bbox
        assert box.x1 <= figure.x1 + 1 and box.y0 >= figure.y0 - 1, "the legend is cut off the saved figure"
    finally:
        assert _png(plt, fig).startswith(b"\x89PNG")
