"""Each command's --help shows its own examples; finetune --help lists every key with its default."""

from __future__ import annotations

import pytest

from maskbench.cli import main


@pytest.mark.parametrize("command", [["pretrain"], ["finetune"], ["prepare"], ["heads"], ["probe"], ["objectives"],
                                     ["experiment", "run"], ["demo"], ["export"], ["import"]])
def test_help_has_examples_of_that_command(command, capsys):
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    out = capsys.readouterr().out
    examples = out[out.index("example"):]
    assert f"maskbench {' '.join(command)}" in examples
    if "--set KEY=VALUE" in out:
        assert "objective.mask_rate" not in out or command == ["pretrain"]


def test_finetune_help_lists_keys_and_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    out = capsys.readouterr().out
    from maskbench.finetune.config import FinetuneConfig

    defaults = FinetuneConfig()
    for key, value in (("batch_size", defaults.batch_size), ("child.p_d", defaults.child.p_d),
                       ("squad.doc_stride", defaults.squad.doc_stride)):
        assert f"  {key} = {value}\n" in out
    for key in ("lr", "epochs", "warmup"):  # unset: chosen for the model's size
        assert f"  {key} = (by size)\n" in out
