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


def test_data_size_paper_scale_truncates_to_table_9s_sizes():
    """Table 9: the full C4 against 2^29, 2^27, 2^25 and 2^23 tokens, at the same 2^35-token budget."""
    sizes = sorted({get_dotted(cell.config, "pretrain.data.max_tokens") for cell in load_spec("t5-data-size").resolve("paper")})
    assert sizes[:4] == [2 ** 23, 2 ** 25, 2 ** 27, 2 ** 29] and sizes[4] >= 2 ** 40  # the last: larger than any corpus


def test_multitask_paper_scale_mixes_as_table_11():
    """Table 11: span corruption and the GLUE tasks mixed by examples-proportional (K from 2^16 to 2^21),
    temperature-scaled (T = 2) and equal rates, for the baseline's pre-training plus fine-tuning steps."""
    mixtures = [get_dotted(cell.config, "finetune.mixture") for cell in load_spec("t5-multitask").resolve("paper")]
    mixtures = [m for m in mixtures if m and m.get("tasks")]
    assert {m["strategy"] for m in mixtures} == {"proportional", "temperature", "equal"}
    for m in mixtures:
        assert m["unsupervised"] and len(m["tasks"]) == 8
        if m["strategy"] != "equal":
            assert m["limit"] in {2 ** k for k in range(16, 22)}
        if m["strategy"] == "temperature":
            assert m["temperature"] == 2.0
    steps = {get_dotted(cell.config, "finetune.max_steps") for cell in load_spec("t5-multitask").resolve("paper")
             if not get_dotted(cell.config, "pretrain.enabled")}
    assert steps == {2 ** 19 + 2 ** 18}
