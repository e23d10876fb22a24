"""The mask-rate preset runs the paper's recipe at `paper` scale and a decoupling table, not one diagonal."""

from __future__ import annotations

import itertools

from maskbench.experiments.spec import get_dotted, load_spec
from maskbench.experiments.stages import validate_config
from maskbench.models.sizes import named_config


def paper_cells():
    return load_spec("mask-rate").resolve("paper")


def test_paper_scale_is_the_reference_recipe():
    """DinkyTrain's run_efficient_mlm_recipe.sh: --encoder-normalize-before, --leave-unmasked-prob 0
    --random-token-prob 0, Adam (0.9, 0.98) eps 1e-6, --clip-norm 0, weight decay 0.01 (fairseq decays every
    parameter), lr 2e-3, 1,380 warm-up updates of 23,000, polynomial (linear) decay, 4096 x 128, no NSP."""
    for cell in paper_cells():
        validate_config(cell.config)
        pretrain = cell.config["pretrain"]
        model = named_config(pretrain["model"]["size"], **{k: v for k, v in pretrain["model"].items() if k != "size"})
        assert model.norm == "pre" and model.num_layers == 24 and model.hidden_size == 1024
        assert pretrain["objective"].get("sentence") is None and pretrain["objective"]["name"] == "mlm"
        assert pretrain["optim"] == {"name": "adamw", "lr": 2e-3, "betas": [0.9, 0.98], "eps": 1e-6,
                                     "weight_decay": 0.01, "exclude_norm_and_bias": False, "grad_clip": 0.0}
        assert pretrain["schedule"]["warmup_steps"] == 1380 == round(0.06 * pretrain["budget"]["steps"])
        assert pretrain["schedule"]["decay"] == "linear" and pretrain["schedule"]["min_lr_ratio"] == 0.0
        assert pretrain["batch"]["size"] == 4096 and cell.config["prepare"]["seq_len"] == 128


def test_paper_scale_masks_only_with_mask_except_on_the_replacement_axis():
    for cell in paper_cells():
        replace = get_dotted(cell.config, "pretrain.objective.replace")
        if replace != [1.0, 0.0, 0.0]:
            assert replace == [0.8, 0.1, 0.1] and "replacement" in cell.series
    replacement = [c for c in paper_cells() if "replacement" in c.series]
    assert {(get_dotted(c.config, "pretrain.objective.mask_rate"),
             tuple(get_dotted(c.config, "pretrain.objective.replace"))) for c in replacement} == set(itertools.product([0.15, 0.4], [(0.8, 0.1, 0.1), (1.0, 0.0, 0.0)]))


def test_decoupling_table_fixes_each_rate_and_varies_the_other():
    for scale in ("tiny", "small", "paper"):
        cells = [c for c in load_spec("mask-rate").resolve(scale) if "corruption vs prediction" in c.series]
        pairs = {(get_dotted(c.config, "pretrain.objective.mask_rate"),
                  get_dotted(c.config, "pretrain.objective.predict_rate")) for c in cells}
        assert pairs == set(itertools.product([0.2, 0.4, 0.8], [0.2, 0.4]))
