"""The runner: shared stages run once, finished stages are skipped, failures are recorded, runs resume."""

from __future__ import annotations

import json

import pytest

import fake_stages
from maskbench.experiments.runner import run_experiment
from maskbench.experiments.spec import parse_spec


def make_spec(rates=(0.15, 0.4), methods=("vanilla", "child_d"), seeds=(0, 1), extra_axes=(), **base_pretrain):
    return parse_spec({
        "experiment": {"name": "unit"},
        "base": {"data": {"lines": 3},
                 "pretrain": {"steps": 3, "objective": {"mask_rate": 0.15}, **base_pretrain},
                 "finetune": {"tasks": ["synth"], "methods": list(methods), "seeds": list(seeds)},
                 "probe": {"enabled": True}},
        "axes": [{"name": "rate", "values": {"pretrain.objective.mask_rate": list(rates)}}, *extra_axes],
    })


def run(spec, out, **kw):
    return run_experiment(spec, out, stages=fake_stages.STAGES, progress=False, report=False, **kw)


def by_stage(calls):
    counts = {}
    for c in calls:
        counts[c["stage"]] = counts.get(c["stage"], 0) + 1
    return counts


def test_shared_stages_run_once(tmp_path):
    # 2 rates x 2 learning rates: 4 cells, but pretraining only depends on the rate
    spec = make_spec(extra_axes=[{"name": "lr", "values": {"finetune.lr": [1e-4, 3e-4]}}])
    index = run(spec, tmp_path)
    assert len(index["cells"]) == 4
    counts = by_stage(fake_stages.calls(tmp_path))
    assert counts == {"prepare": 1, "pretrain": 2, "finetune": 4 * 2 * 2, "probe": 2}


def test_second_run_skips_every_finished_stage(tmp_path):
    spec = make_spec()
    first = run(spec, tmp_path)
    n = len(fake_stages.calls(tmp_path))
    second = run(spec, tmp_path)
    assert len(fake_stages.calls(tmp_path)) == n
    assert second["stages_run"] == 0 and second["stages_reused"] == first["stages_run"]


def test_adding_a_seed_runs_only_the_new_seed(tmp_path):
    run(make_spec(seeds=(0, 1)), tmp_path)
    before = by_stage(fake_stages.calls(tmp_path))
    run(make_spec(seeds=(0, 1, 2)), tmp_path)
    after = by_stage(fake_stages.calls(tmp_path))
    assert after["pretrain"] == before["pretrain"]
    assert after["finetune"] - before["finetune"] == 2 * 2  # 2 rates x 2 methods x the new seed


def test_failed_cell_is_recorded_and_the_others_finish(tmp_path):
    spec = make_spec(rates=(0.15, 0.4, 0.6),
                     extra_axes=[{"name": "fail", "kind": "zip", "values": {"pretrain.fail": [False, True]}}])
    index = run(spec, tmp_path)
    cells = [json.loads((tmp_path / "cells" / cid / "cell.json").read_text()) for cid in index["cells"]]
    failed = [c for c in cells if c["status"] == "failed"]
    done = [c for c in cells if c["status"] == "done"]
    assert len(failed) == 3 and len(done) == 3
    assert all("pretraining diverged (fake)" in c["error"] and "\n" not in c["error"] for c in failed)
    finetunes = [c for c in fake_stages.calls(tmp_path) if c["stage"] == "finetune"]
    assert len(finetunes) == 3 * 2 * 2  # only the healthy cells were fine-tuned
    assert index["stages_failed"] == 3 + 3 * (2 * 2 + 1)  # the pretrainings and everything that needed them


def test_failed_stage_is_retried_on_the_next_run(tmp_path):
    run(make_spec(rates=(0.15,), fail=True), tmp_path)
    assert by_stage(fake_stages.calls(tmp_path))["pretrain"] == 1
    run(make_spec(rates=(0.15,), fail=True), tmp_path)
    assert by_stage(fake_stages.calls(tmp_path))["pretrain"] == 2


def test_interrupted_experiment_resumes_where_it_stopped(tmp_path):
    spec = make_spec(rates=(0.15, 0.4), interrupt=True)
    with pytest.raises(KeyboardInterrupt):
        run(spec, tmp_path)
    first = fake_stages.calls(tmp_path)
    assert by_stage(first) == {"prepare": 1, "pretrain": 1}
    index = json.loads((tmp_path / "experiment.json").read_text())
    assert index["status"] == "interrupted"
    run(spec, tmp_path)
    calls = fake_stages.calls(tmp_path)[len(first):]
    assert "prepare" not in by_stage(calls)  # finished before the interruption
    resumed = [c for c in calls if c["stage"] == "pretrain"]
    assert resumed[0]["resume"] is True  # the killed stage found its partial folder
    assert (tmp_path / "stages" / "pretrain" / resumed[0]["key"] / "partial-checkpoint").exists()
    assert json.loads((tmp_path / "experiment.json").read_text())["status"] == "finished"


def test_done_marker_is_what_counts(tmp_path):
    spec = make_spec(rates=(0.15,))
    index = run(spec, tmp_path)
    cell = json.loads((tmp_path / "cells" / index["cells"][0] / "cell.json").read_text())
    pretrain = next(s for s in cell["stages"] if s["stage"] == "pretrain")
    (tmp_path / "stages" / "pretrain" / pretrain["key"] / "done.json").unlink()
    n = len(fake_stages.calls(tmp_path))
    run(spec, tmp_path)
    # the pretraining runs again; its children keep their own done markers (their key did not change)
    assert [c["stage"] for c in fake_stages.calls(tmp_path)[n:]] == ["pretrain"]


def test_parallel_jobs_give_the_same_results(tmp_path):
    spec = make_spec(seeds=(0, 1))
    run(spec, tmp_path / "serial")
    index = run(spec, tmp_path / "parallel", jobs=2)
    assert index["stages_failed"] == 0
    for cid in index["cells"]:
        a = json.loads((tmp_path / "serial" / "cells" / cid / "cell.json").read_text())
        b = json.loads((tmp_path / "parallel" / "cells" / cid / "cell.json").read_text())
        assert [s["key"] for s in a["stages"]] == [s["key"] for s in b["stages"]]
        assert b["status"] == "done"
    assert by_stage(fake_stages.calls(tmp_path / "parallel")) == by_stage(fake_stages.calls(tmp_path / "serial"))


def test_demo_runs_through_the_runner_and_reuses_everything(tmp_path, capsys):
    from maskbench.experiments.demo import run_demo

    first = run_demo(tmp_path, progress=False, stages=fake_stages.STAGES)
    out = capsys.readouterr().out
    assert "not pretrained" in out and "MLM 40%" in out and "report: " in out and "±" in out
    assert len(first["cells"]) == 7 and first["stages_failed"] == 0  # 3 fine-tuned, 2 ALBERT, 2 T5 cells
    assert "pretraining only (sentence objectives, T5 noise)" in out and "MLM 15% + SOP" in out
    headers = [line for line in out.splitlines() if line.startswith("pretraining ")]
    assert headers and all("sentence task" not in h and "corruption" not in h for h in headers)  # other series
    second = run_demo(tmp_path, progress=False, stages=fake_stages.STAGES)
    assert second["stages_run"] == 0 and second["stages_reused"] == first["stages_run"]
    assert "reused from an earlier run" in capsys.readouterr().out


def test_failed_cells_print_their_one_line_reason(tmp_path, capsys):
    from maskbench.experiments.runner import print_failures

    spec = make_spec(rates=(0.15, 0.4), extra_axes=[{"name": "fail", "kind": "zip",
                                                     "values": {"pretrain.fail": [True]}}])
    index = run(spec, tmp_path)
    print_failures(index)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 == len(index["failed_cells"])
    assert all("pretrain" in line and "pretraining diverged (fake)" in line for line in lines)


def test_a_folder_holding_other_results_is_never_taken_over(tmp_path):
    from maskbench.errors import MaskbenchError

    other = tmp_path / "other"
    other.mkdir()
    (other / "report.md").write_text("someone else's report")
    with pytest.raises(MaskbenchError, match="not empty"):
        run(make_spec(), other)
    assert [p.name for p in other.iterdir()] == ["report.md"]
    run(make_spec(), tmp_path / "unit")
    before = (tmp_path / "unit" / "spec.toml").read_text()
    renamed = make_spec()
    renamed.experiment.name = "another"
    with pytest.raises(MaskbenchError, match="holds experiment 'unit' at scale tiny"):
        run(renamed, tmp_path / "unit")
    with pytest.raises(MaskbenchError, match="holds experiment 'unit' at scale tiny"):
        run(make_spec(), tmp_path / "unit", scale="small")
    assert (tmp_path / "unit" / "spec.toml").read_text() == before


def test_a_running_experiment_locks_its_folder(tmp_path):
    from maskbench.errors import MaskbenchError
    from maskbench.io import run_lock

    with run_lock(tmp_path / "exp"):
        with pytest.raises(MaskbenchError, match="in use by another maskbench process"):
            run(make_spec(), tmp_path / "exp")
    run(make_spec(), tmp_path / "exp")
