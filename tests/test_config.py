"""Config loading: TOML + --set overrides, validation with one-line errors naming the key."""

from __future__ import annotations

import pytest

from ebmlab.config import ConfigError, dump_toml, load_config, parse_override, read_toml
from ebmlab.experiment import RunConfig


def test_defaults_and_overrides(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[train]\niterations = 77\n[sampler]\nname = "mala"\nstep_size = 0.1\n')
    cfg = load_config(RunConfig, path=f, overrides=["train.iterations=5", "data.name=rings",
                                                    "sampler.clamp=[-3, 3]"])
    assert cfg.train.iterations == 5 and cfg.sampler.name == "mala"
    assert cfg.sampler.step_size == 0.1 and cfg.data.name == "rings"
    assert cfg.sampler.clamp == [-3.0, 3.0]


def test_dump_round_trips(tmp_path):
    cfg = load_config(RunConfig, overrides=["sampler.noise_scale=0.01", "method.name=cd"])
    f = tmp_path / "out.toml"
    f.write_text(dump_toml(cfg))
    assert load_config(RunConfig, path=f) == cfg
    assert read_toml(f)["method"]["name"] == "cd"


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.iterationz=5", "unknown key train.iterationz"),
        ("trian.iterations=5", "unknown section [trian]"),
        ("train.iterations=5.5", "train.iterations must be an integer"),
        ("train.iterations=true", "train.iterations must be an integer"),
        ("train.iterations=0", "train.iterations must be >= 1"),
        ("sampler.step_size=0", "sampler.step_size must be > 0.0"),
        ("sampler.step_size=abc", "sampler.step_size must be a number"),
        ("sampler.name=gibbs", "sampler.name must be one of"),
        ("method.reinit_prob=1.5", "method.reinit_prob must be <= 1.0"),
        ("train.progress=2", "train.progress must be true or false"),
        ("data.name=nope", "data.name must be one of"),
        ("data.name=npy", "data.path is required"),
        ("sampler.clamp=[1, -1]", "sampler.clamp must be [low, high]"),
        ("sampler.name=anila", "sampler.threshold"),
        ("iterations=5", "--set needs section.key=value"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(RunConfig, overrides=[override])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(RunConfig, path=tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\niterations = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(RunConfig, path=bad)


def test_parse_override_types():
    assert parse_override("a.b=3") == ("a", "b", 3)
    assert parse_override("a.b=3.5") == ("a", "b", 3.5)
    assert parse_override("a.b=false") == ("a", "b", False)
    assert parse_override('a.b="x y"') == ("a", "b", "x y")
    assert parse_override("a.b=rings") == ("a", "b", "rings")
