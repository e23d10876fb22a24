"""Metrics against scikit-learn/SciPy, the GLUE submission format, the summary's paired test, the config."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import pearsonr, spearmanr, ttest_rel
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from maskbench.config import from_dict
from maskbench.errors import ConfigError
from maskbench.finetune import metrics
from maskbench.finetune.config import FinetuneConfig, default_lr
from maskbench.finetune.loop import submission_text
from maskbench.finetune.summary import paired_test, summarize, to_markdown


@pytest.mark.filterwarnings("ignore:A single label was found")  # scikit-learn's own call below, one class
@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=2, max_size=60))
def test_classification_metrics_match_scikit_learn(pairs):
    preds = np.array([p for p, _ in pairs])
    labels = np.array([y for _, y in pairs])
    assert metrics.accuracy(preds, labels) == pytest.approx(accuracy_score(labels, preds))
    assert metrics.f1(preds, labels) == pytest.approx(f1_score(labels, preds, zero_division=0.0))
    assert metrics.matthews(preds, labels) == pytest.approx(matthews_corrcoef(labels, preds))


def test_known_values():
    preds = np.array([1, 1, 0, 0, 1])
    labels = np.array([1, 0, 0, 1, 1])
    assert metrics.accuracy(preds, labels) == pytest.approx(0.6)
    assert metrics.f1(preds, labels) == pytest.approx(2 / 3)
    x = np.array([0.1, 0.4, 0.35, 0.8, 2.0])
    y = np.array([0.0, 0.5, 0.3, 1.0, 1.5])
    assert metrics.pearson(x, y) == pytest.approx(pearsonr(x, y)[0])
    assert metrics.spearman(x, y) == pytest.approx(spearmanr(x, y)[0])
    assert metrics.pearson(np.ones(5), y) == 0.0  # constant predictions: no correlation, not NaN


def test_compute_scores_the_mean_and_knows_aliases():
    out = metrics.compute(["f1", "acc"], np.array([1, 0, 1]), np.array([1, 1, 1]))
    assert out["score"] == pytest.approx((out["f1"] + out["accuracy"]) / 2)
    with pytest.raises(ConfigError, match="did you mean 'accuracy'"):
        metrics.canonical("acuracy")


def test_submission_format_uses_label_names_and_the_glue_header():
    text = submission_text(np.array([1, 0]), [0, 1], 2, ["entailment", "not_entailment"])
    assert text == "index\tprediction\n0\tnot_entailment\n1\tentailment\n"
    assert submission_text(np.array([3.14159]), [7], 1, None) == "index\tprediction\n7\t3.142\n"


def test_paired_test_matches_scipy():
    a, b = [0.70, 0.72, 0.69, 0.75], [0.66, 0.70, 0.68, 0.71]
    out = paired_test(a, b)
    expected = ttest_rel(a, b)
    assert out["p"] == pytest.approx(expected.pvalue)
    assert out["t"] == pytest.approx(expected.statistic)
    assert out["diff_mean"] == pytest.approx(np.mean(np.subtract(a, b)))
    assert paired_test([0.5], [0.4])["p"] is None
    same = paired_test([0.7, 0.6, 0.9], [0.6, 0.5, 0.8])  # +0.1 on every seed, up to float rounding
    assert same["p"] is None and same["t"] is None and same["diff_mean"] == pytest.approx(0.1)


def _run(method, seed, score):
    return {"method": method, "seed": seed, "score": score, "dev": {"accuracy": score, "score": score}}


def test_summary_pairs_by_seed_and_reports_mean_and_std():
    runs = {"vanilla": [_run("vanilla", s, v) for s, v in [(0, 0.6), (1, 0.62), (2, 0.58)]],
            "child_d": [_run("child_d", s, v) for s, v in [(2, 0.63), (0, 0.66), (1, 0.65)]]}
    summary = summarize(runs, ["accuracy"], ["dev"], {"task": "RTE"})
    assert summary["methods"]["vanilla"]["score"]["mean"] == pytest.approx(0.6)
    assert summary["methods"]["vanilla"]["score"]["std"] == pytest.approx(np.std([0.6, 0.62, 0.58], ddof=1))
    versus = summary["vs_vanilla"]["child_d"]["score"]
    assert versus["p"] == pytest.approx(ttest_rel([0.66, 0.65, 0.63], [0.6, 0.62, 0.58]).pvalue)
    md = to_markdown(summary)
    assert "| child_d | 3 | 64.67 ± 1.53 |" in md and "+4.67" in md


def _fisher(head_seed, seconds):
    return {"seconds": seconds, "examples": 64, "batches": 2, "head_seed": head_seed, "kept": 3, "total": 10}


@pytest.mark.parametrize("per_seed", [True, False])
def test_the_summary_counts_every_fisher_pass(per_seed):
    runs = {"vanilla": [_run("vanilla", s, 0.6) for s in range(3)],
            "child_d": [{**_run("child_d", s, 0.6), "fisher": _fisher(s if per_seed else 0, 10.0 + s)}
                        for s in range(3)]}
    fisher = summarize(runs, ["accuracy"], ["dev"])["methods"]["child_d"]["fisher"]
    md = to_markdown(summarize(runs, ["accuracy"], ["dev"]))
    if per_seed:  # one pass per seed (each with the seed's head): the time of all three, not of the first
        assert fisher["passes"] == 3 and fisher["seconds_total"] == pytest.approx(33.0)
        assert "took 10.0 s (for seed 0; computed once per seed: 3 passes, 33.0 s in all;" in md
    else:  # one estimate shared by the seeds
        assert fisher["passes"] == 1 and fisher["seconds_total"] == pytest.approx(10.0)
        assert "took 10.0 s (computed once; reported apart from training)" in md


def test_config_validation_and_lr_rule():
    with pytest.raises(ConfigError, match=r"child.p_f: must be in \(0, 1\]"):
        from_dict(FinetuneConfig, {"child": {"p_f": 0.0}})
    with pytest.raises(ConfigError, match="child.p_d"):
        from_dict(FinetuneConfig, {"child": {"p_d": 1.5}})
    with pytest.raises(ConfigError, match="did you mean 'child_d'"):
        from_dict(FinetuneConfig, {"methods": ["child_dd"]})
    assert default_lr(768) == 2e-5 and default_lr(1024) == 2e-5
    assert default_lr(128) == 1e-3 and default_lr(256) == 3e-4 and default_lr(512) == 1e-4  # SIZE_DEFAULTS
