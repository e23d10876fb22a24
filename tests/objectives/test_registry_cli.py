"""The registry (names, did-you-mean, tokenizer wiring) and the `maskbench objectives` / `pmi` commands."""

from __future__ import annotations

import json

import pytest
import torch

from maskbench.cli import main
from maskbench.errors import ConfigError
from maskbench.objectives import (build_objective, build_objective_for_tokenizer, list_objectives,
                                  objective_from_config, objective_params)
from objectives_helpers import SENTINELS, make_batch, mlm_wiring

ALL = ["mlm", "nsp", "sop", "prefix_lm", "bert_style", "deshuffle", "iid_mask", "replace_spans", "drop",
       "span_corruption"]


def test_every_objective_is_listed_with_its_defaults():
    infos = {info.name: info for info in list_objectives()}
    assert sorted(infos) == sorted(ALL)
    mlm = {p.name: p for p in infos["mlm"].parameters}
    assert mlm["mask_rate"].default == 0.15 and mlm["replace"].default == (0.8, 0.1, 0.1)
    assert mlm["vocab_size"].wiring and not mlm["unit"].wiring
    assert all(info.description for info in infos.values())


def test_unknown_names_and_parameters_suggest_the_nearest():
    with pytest.raises(ConfigError, match="did you mean 'span_corruption'"):
        build_objective("span_corruptoin")
    with pytest.raises(ConfigError, match="did you mean 'objective.mask_rate'"):
        build_objective("mlm", **mlm_wiring(), mask_rat=0.3)
    with pytest.raises(ConfigError, match="fixes sentence"):
        build_objective("nsp", **mlm_wiring(), sentence="sop")


def test_built_from_a_tokenizer_s_special_ids():
    from maskbench.data.tokenizer import SpecialIds

    ids = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4, sentinels=SENTINELS)
    mlm = build_objective_for_tokenizer("mlm", ids, 1000, mask_rate=0.3)
    assert mlm.mask_id == 4 and 104 in mlm.special_ids and mlm.vocab_size == 1000
    t5 = build_objective_for_tokenizer("span_corruption", ids, 1000)
    assert t5.sentinel_ids[0] == 5 and t5.eos_id == 3 and t5.pad_id == 0
    assert t5.lengths(512) == (568, 114)
    again = objective_from_config(objective_params(mlm), ids, 1000)
    assert again == mlm
    with pytest.raises(ConfigError, match="objective name"):
        objective_from_config({"mask_rate": 0.3}, ids, 1000)


def test_objectives_are_usable_from_a_trained_tokenizer(tmp_path):
    from maskbench.data.tokenizer import train_tokenizer

    texts = ["the cat sat on the mat", "a dog ran in the park"] * 50
    tok = train_tokenizer(None, kind="wordpiece", vocab_size=200, texts=texts)
    obj = build_objective_for_tokenizer("mlm", tok, mask_rate=0.5)
    enc = tok.encode("the cat sat on the mat")
    batch = {"input_ids": torch.tensor([enc.ids]), "attention_mask": torch.tensor([enc.attention_mask])}
    out = obj(batch, generator=torch.Generator().manual_seed(0))
    assert int((out["labels"] != -100).sum()) == round(0.5 * (len(enc.ids) - 2))


def test_cli_lists_every_objective(capsys):
    assert main(["objectives"]) == 0
    text = capsys.readouterr().out
    for name in ALL:
        assert f"\n{name}: " in "\n" + text
    assert main(["objectives", "--json"]) == 0
    assert [o["name"] for o in json.loads(capsys.readouterr().out)] == ALL


def test_cli_checks_one_objective(capsys):
    assert main(["objectives", "mlm", "--set", "objective.mask_rate=0.2", "--set", "objective.predict_rate=0.6"]) == 0
    assert "batch x3" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["objectives", "mlm", "--set", "objective.mask_rate=1.5"], "mask_rate: must be in (0, 1)"),
    (["objectives", "mlm", "--set", "objective.replace=[0.5, 0.1, 0.1]"], "must sum to 1"),
    (["objectives", "mlm", "--set", "objective.mask_rate=0.2", "--set", "objective.predict_rate=0.5"],
     "must be an integer"),
    (["objectives", "mlm", "--set", "objective.unit='span'", "--set", "objective.max_span=0"], "at least 1"),
    (["objectives", "span_corruption", "--set", "objective.mean_span_length=0.5"], "at least 1"),
    (["objectives", "mlmm"], "did you mean 'mlm'"),
    (["objectives", "mlm", "--set", "objective.uint='span'"], "did you mean 'objective.unit'"),
])
def test_cli_bad_objective_exits_2_with_one_line(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_batch_keys_are_preserved_for_the_trainer():
    batch = make_batch(2, 16, seed=0)
    out = build_objective("mlm", **mlm_wiring())(batch, generator=torch.Generator())
    assert set(out) == set(batch) | {"labels"}
    assert out["input_ids"].dtype == torch.long and out["labels"].dtype == torch.long
