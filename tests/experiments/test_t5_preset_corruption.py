"""The t5-objectives preset corrupts as T5's reference does at every scale: Bernoulli i.i.d. noise."""

from __future__ import annotations

import pytest

from maskbench.experiments.spec import get_dotted, load_spec
from maskbench.objectives.t5 import NoiseObjective

IID = ("bert_style", "iid_mask", "replace_spans", "drop")


@pytest.mark.parametrize("scale", ["tiny", "small", "paper"])
def test_iid_objectives_draw_bernoulli_noise(scale):
    cells = load_spec("t5-objectives").resolve(scale)
    iid = [c for c in cells if get_dotted(c.config, "pretrain.objective.name") in IID]
    assert {get_dotted(c.config, "pretrain.objective.name") for c in iid} == set(IID)
    for cell in iid:  # spelled out in the preset, and the objectives' own default
        assert get_dotted(cell.config, "pretrain.objective.sampling") == "bernoulli"
    assert NoiseObjective.__dataclass_fields__["sampling"].default == "bernoulli"


@pytest.mark.parametrize("preset", ["t5-objectives", "t5-data-size", "t5-multitask"])
def test_paper_scale_pretrains_the_baselines_2_to_the_19_steps(preset):
    """Section 3.1.2: every baseline is pre-trained for 2^19 = 524,288 steps of 128 x 512 tokens (2^35 tokens)."""
    for cell in load_spec(preset).resolve("paper"):
        assert get_dotted(cell.config, "pretrain.budget.steps") == 2 ** 19
        assert get_dotted(cell.config, "pretrain.batch.size") == 128


@pytest.mark.parametrize("preset", ["t5-objectives", "t5-data-size", "t5-multitask"])
def test_paper_scale_fine_tunes_with_adafactor_at_a_constant_rate(preset):
    """Section 3.1.2: fine-tuning continues with Adafactor at a constant learning rate of 0.001."""
    for cell in load_spec(preset).resolve("paper"):
        assert get_dotted(cell.config, "finetune.optimizer") == "adafactor"
        assert get_dotted(cell.config, "finetune.lr") == 1e-3
        assert get_dotted(cell.config, "finetune.lr_schedule") == "constant"
        assert get_dotted(cell.config, "finetune.warmup") == 0.0
