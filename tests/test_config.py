"""Config loading: TOML + --set overrides, validation with one-line errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ebmlab.config import ConfigError, dump_toml, load_config, parse_override, read_toml
from ebmlab.experiment import RunConfig

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_and_overrides(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[train]\niterations = 77\n[sampler]\nname = "mala"\nstep_size = 0.1\n')
    cfg = load_config(RunConfig, path=f, overrides=["train.iterations=5", "data.name=rings",
                                                    "sampler.clamp=[-3, 3]"])
    negatives = cfg.samplers["negatives"]
    assert cfg.train.iterations == 5 and negatives["name"] == "mala"
    assert negatives["step_size"] == 0.1 and cfg.data.name == "rings"
    assert negatives["clamp"] == [-3, 3]


def test_sampler_roles_and_optim_groups_as_nested_tables(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[method]\nname = "steingan"\n[samplers.negatives]\nstep_size = 0.2\n'
                 '[optim.generator]\nlr = 5e-3\noptimizer = "sgd"\n')
    cfg = load_config(RunConfig, path=f, overrides=["optim.generator.lr=2e-4",
                                                    "optim.energy.beta1=0.9"])
    assert cfg.samplers["negatives"] == {"name": "svgd", "step_size": 0.2}  # role default name
    gen, energy = cfg.optim_for("generator"), cfg.optim_for("energy")
    assert gen.lr == 2e-4 and gen.optimizer == "sgd" and gen.beta1 == cfg.train.beta1
    assert energy.lr == cfg.train.lr and energy.beta1 == 0.9
    assert cfg.generator is not None and cfg.generator.name == "mlp"


def test_method_options_belong_to_the_method():
    cfg = load_config(RunConfig, overrides=["method.name=cd"])
    assert not hasattr(cfg.method, "buffer_size")  # a persistent-only option
    with pytest.raises(ConfigError, match="method.buffer_size does not apply to method.name"):
        load_config(RunConfig, overrides=["method.name=cd", "method.buffer_size=10"])
    with pytest.raises(ConfigError, match="generator. does not apply"):
        load_config(RunConfig, overrides=["generator.latent_dim=3"])


def test_dump_round_trips(tmp_path):
    cfg = load_config(RunConfig, overrides=["sampler.name=langevin", "sampler.noise_scale=0.01",
                                            "method.name=cd",
                                            "optim.energy.lr=3e-4"])
    f = tmp_path / "out.toml"
    f.write_text(dump_toml(cfg))
    assert load_config(RunConfig, path=f) == cfg
    assert read_toml(f)["method"]["name"] == "cd"


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.iterationz=5", "unknown key train.iterationz; did you mean train.iterations?"),
        ("trian.iterations=5", "unknown section [trian]; did you mean [train]?"),
        ("method.n_step=5", "did you mean method.n_steps?"),
        ("method.name=persistant", "did you mean persistent?"),
        ("samplers.negative.step_size=1", "did you mean samplers.negatives?"),
        ("optim.generator.lr=1", "unknown parameter group optim.generator"),
        ("optim.energy.lrr=1", "did you mean optim.energy.lr?"),
        ("sampler.foo=1", "has no option 'foo'"),
        ("train.iterations=5.5", "train.iterations must be an integer"),
        ("train.iterations=true", "train.iterations must be an integer"),
        ("train.iterations=0", "train.iterations must be >= 1"),
        ("sampler.step_size=0", "[samplers.negatives] step_size must be finite and > 0"),
        ("sampler.step_size=abc", "[samplers.negatives] step_size must be a number"),
        ("sampler.name=gibbs", "samplers.negatives.name must be one of"),
        ("method.reinit_prob=1.5", "method.reinit_prob does not apply to method.name = 'cd' "
                                   "(an option of persistent)"),
        ("train.progress=2", "train.progress must be true or false"),
        ("data.name=nope", "data.name must be one of"),
        ("data.name=npy", "data.path is required"),
        ("sampler.clamp=[1, -1]", "clamp must satisfy low < high"),
        ("sampler.name=anila", "samplers.negatives.threshold is required"),
        ("iterations=5", "--set needs section.key=value"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(RunConfig, overrides=[override])
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert len(str(e.value)) < 200


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


def test_a_none_that_is_not_the_default_survives_a_round_trip(tmp_path):
    cfg = load_config(RunConfig, overrides=["model.reference_sd=none",
                                            "method.target_accept=none"])
    assert cfg.model.reference_sd is None and cfg.method.target_accept is None
    f = tmp_path / "out.toml"
    f.write_text(dump_toml(cfg))
    assert load_config(RunConfig, path=f) == cfg


def test_a_method_option_out_of_range():
    with pytest.raises(ConfigError, match=r"method.reinit_prob must be <= 1.0"):
        load_config(RunConfig, overrides=["method.name=persistent", "method.reinit_prob=1.5"])



def _schema_sections():
    import dataclasses

    from ebmlab.experiment import DataConfig, GeneratorConfig, ModelConfig, OptimConfig, TrainConfig
    from ebmlab.methods import METHODS

    classes = [DataConfig, ModelConfig, GeneratorConfig, TrainConfig, OptimConfig,
               *(spec.options for spec in METHODS.values())]
    return [(cls, f) for cls in classes for f in dataclasses.fields(cls)]


def test_every_key_has_help_text():
    missing = [f"{cls.__name__}.{f.name}" for cls, f in _schema_sections()
               if not f.metadata.get("help")]
    assert not missing, f"config keys without help text: {missing}"


@pytest.mark.parametrize("method", ["cd", "persistent", "short_run", "steincd", "steingan"])
def test_show_lists_every_key_and_loads_back(tmp_path, capsys, method):
    import dataclasses

    from ebmlab.cli import main

    assert main(["config", "--show", "--method", method, "--set", "train.iterations=7",
                 "model.width=32"]) == 0
    text = capsys.readouterr().out
    cfg = load_config(RunConfig, overrides=[f"method.name={method}", "train.iterations=7",
                                            "model.width=32"])
    f = tmp_path / "shown.toml"
    f.write_text(text)
    assert load_config(RunConfig, path=f) == cfg  # valid TOML, the same config
    sections = {"data": cfg.data, "model": cfg.model, "method": cfg.method, "train": cfg.train}
    if cfg.generator is not None:
        sections["generator"] = cfg.generator
    for name, obj in sections.items():
        body = text.split(f"\n[{name}]\n", 1)[1].split("\n[", 1)[0]
        for fld in dataclasses.fields(obj):
            assert f"\n{fld.name} =" in "\n" + body or f"\n# {fld.name} =" in "\n" + body, \
                (name, fld.name)
            help_start = fld.metadata["help"].split()[0]
            assert help_start in body
    assert "iterations = 7" in text and "(int; >= 1; default 6000)" in text
    assert "width = 32" in text and "only when model.name is mlp or conv" in text
    assert ("[generator]" in text) == (method == "steingan")


def test_saved_config_holds_only_what_applies():
    from ebmlab.config import dump_toml

    text = dump_toml(load_config(RunConfig))  # cd, MLP, a toy set
    tables = read_toml_text(text)
    assert "generator" not in tables and "n_hidden" not in tables["model"]
    assert "reference_sd" in tables["model"] and "n_train" in tables["data"]
    assert not {"path", "max_items", "test_fraction"} & set(tables["data"])
    rbm = load_config(RunConfig, path=ROOT / "configs" / "steincd_digits.toml")
    tables = read_toml_text(dump_toml(rbm))
    assert set(tables["model"]) == {"name", "n_hidden"}
    assert not {"n_train", "n_test", "seed", "path", "test_fraction"} & set(tables["data"])
    gan = read_toml_text(dump_toml(load_config(RunConfig, overrides=[
        "method.name=steingan", "generator.name=deconv", "data.name=digits", "model.name=rbm"])))
    assert "depth" not in gan["generator"] and "latent_dim" in gan["generator"]


def read_toml_text(text):
    from ebmlab.config import tomllib

    return tomllib.loads(text)
