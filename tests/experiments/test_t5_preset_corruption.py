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
