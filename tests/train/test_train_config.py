"""PretrainConfig: TOML round trip, overrides, and one-line errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maskbench.config import dumps_toml, from_dict, to_dict
from maskbench.errors import ConfigError
from maskbench.train import FORMAT_VERSION, PretrainConfig, load_pretrain_config, parse_duration
from maskbench.train.config import BatchConfig


def test_defaults_round_trip_through_toml(tmp_path):
    config = from_dict(PretrainConfig, {"data": {"shards": str(tmp_path / "s")}, "budget": {"time": "10m"}})
    path = tmp_path / "c.toml"
    path.write_text(dumps_toml(config))
    again = load_pretrain_config(path)
    assert to_dict(again) == to_dict(config)
    assert again.format_version == FORMAT_VERSION


@settings(max_examples=25, deadline=None)
@given(lr=st.floats(1e-6, 1.0), steps=st.integers(1, 10**6), size=st.sampled_from([8, 16, 32, 256]),
       mask_rate=st.floats(0.01, 0.99), decay=st.sampled_from(["linear", "cosine", "constant"]))
def test_any_valid_config_round_trips(tmp_path_factory, lr, steps, size, mask_rate, decay):
    config = from_dict(PretrainConfig, {
        "optim": {"lr": lr}, "budget": {"steps": steps}, "batch": {"size": size},
        "objective": {"name": "mlm", "mask_rate": mask_rate}, "schedule": {"decay": decay}})
    path = tmp_path_factory.mktemp("rt") / "c.toml"
    path.write_text(dumps_toml(config))
    assert load_pretrain_config(path) == config


def test_set_overrides_apply_after_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[objective]\nname = "mlm"\nmask_rate = 0.15\n[budget]\nsteps = 10\n')
    config = load_pretrain_config(path, ["objective.mask_rate=0.4", "optim.name=lamb", "budget.steps=3"])
    assert config.objective["mask_rate"] == 0.4
    assert config.optim.name == "lamb"
    assert config.budget.steps == 3


@pytest.mark.parametrize("overrides, key, text", [
    (["optim.lrr=0.1"], "optim.lrr", "did you mean 'optim.lr'"),
    (["optim.lr=-1"], "optim.lr", "must be in"),
    (["optim.name=adam"], "optim.name", "did you mean"),
    (["schedule.decay=cosin"], "schedule.decay", "did you mean 'cosine'"),
    (["budget.time='ten minutes'"], "budget.time", "duration"),
    (["batch.size=0"], "batch.size", "must be in"),
    (["format_version=99"], "format_version", "format 99"),
    (["objective.mask_rate=0.2", "objective.name=3"], "objective.name", "needs a name"),
    (["budget.time='1m'", "schedule.warmup_steps=10"], "schedule.warmup_steps", "warmup_fraction"),
    (["schedule.warmup_steps=5", "schedule.warmup_fraction=0.1"], "schedule.warmup_steps", "not both"),
])
def test_bad_values_are_one_line_errors_naming_the_key(overrides, key, text):
    with pytest.raises(ConfigError) as info:
        load_pretrain_config(None, overrides)
    message = str(info.value)
    assert "\n" not in message
    assert key in message, message
    assert text in message


def test_incompatible_format_version_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text("format_version = 0\n[budget]\nsteps = 3\n")
    with pytest.raises(ConfigError, match="old.toml.*format 0"):
        load_pretrain_config(path)


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("10m", 600), ("1.5h", 5400), ("1h30m", 5400),
                                           ("250ms", 0.25), (42, 42), ("12", 12)])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10 minutes", "-5s", "0s", "m10"])
def test_bad_durations(text):
    with pytest.raises(ConfigError):
        parse_duration(text)


def test_accumulation_splits_the_global_batch():
    assert BatchConfig(size=32).accumulation(1) == 1
    assert BatchConfig(size=32, micro_size=8).accumulation(2) == 2
    with pytest.raises(ConfigError, match="batch.size"):
        BatchConfig(size=30).accumulation(4)
    with pytest.raises(ConfigError, match="micro_size"):
        BatchConfig(size=32, micro_size=5).accumulation(1)


def test_relative_data_paths_resolve_against_the_config_file(tmp_path):
    (tmp_path / "shards").mkdir()
    path = tmp_path / "c.toml"
    path.write_text('[data]\nshards = "shards"\n')
    assert load_pretrain_config(path).data.shards == tmp_path / "shards"


def test_a_relative_path_in_a_file_ignores_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "cwd" / "shards").mkdir(parents=True)
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "c.toml"
    path.write_text('[data]\nshards = "shards"\n')
    monkeypatch.chdir(tmp_path / "cwd")
    assert load_pretrain_config(path).data.shards == tmp_path / "conf" / "shards"
    assert load_pretrain_config(path, ["data.shards='shards'"]).data.shards == Path("shards")


CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    config = load_pretrain_config(path)
    assert config.objective["name"]


@pytest.mark.parametrize("name", ["bert-tiny-15", "bert-tiny-40", "albert-base", "t5-span-corruption"])
def test_small_shipped_configs_set_up_on_real_shards(tiny_data, name):
    from maskbench.train.loop import setup

    path = Path(__file__).resolve().parents[2] / "configs" / f"{name}.toml"
    config = load_pretrain_config(path, [f"data.shards='{tiny_data['shards']}'", "data.seq_len=32"])
    built = setup(config)
    assert built.model is not None and built.objective is not None
