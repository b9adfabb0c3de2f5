"""What a run is made of: the config schema, and building data, model, sampler and
method from it. The trainer and the CLI use this; a method never opens files.

Data are standardised (``z = (x − shift)/scale``) unless ``data.standardize =
false``: the energy learns ``U_z``, so chains, step sizes and noise defaults
work for arrays of any scale and offset. Evaluation and plots happen in data
space through :class:`DataSpaceEnergy`, ``U_x(x) = U_z((x − shift)/scale)``,
whose normaliser absorbs the Jacobian, so quadrature gives exact data-space
densities.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ebmlab.chains import NoiseInit, ReplayBuffer
from ebmlab.config import ConfigError, option
from ebmlab.data.arrays import load_array
from ebmlab.data.images import IMAGE_DATASETS
from ebmlab.data.toy2d import TOY_DATASETS, canonical_name, make_toy, toy_bounds, toy_log_density
from ebmlab.energies import GaussianBernoulliRBM, MLPEnergy
from ebmlab.generators import DeconvGenerator, MLPGenerator
from ebmlab.methods import REGIMES, MaximumLikelihood, Method, SteinCD, SteinGAN
from ebmlab.samplers import SAMPLERS, Sampler, make_sampler

TOY_NAMES = sorted(TOY_DATASETS)
ARRAY_FORMATS = ("npy", "csv")
IMAGE_NEEDS_PATH = tuple(n for n in IMAGE_DATASETS if n != "digits")
METHODS = (*REGIMES, "steincd", "steingan")


# -- the schema ---------------------------------------------------------------------------


@dataclass
class DataConfig:
    name: str = option("8gaussians", help="a toy set, an image set (digits, mnist, "
                       "fashion_mnist, cifar10), or 'npy' / 'csv' with data.path")
    path: str | None = option(None, help="npy / csv: file of shape (N, D); mnist / "
                              "fashion_mnist: folder of the IDX files; cifar10: folder of "
                              "the python batches")
    max_items: int | None = option(None, low=1, help="image sets: read at most this many "
                                   "train (and test) images")
    n_train: int = option(20000, low=2, help="toy sets: training points drawn")
    n_test: int = option(5000, low=2, help="toy sets: test points drawn")
    test_fraction: float = option(0.1, low=0.0, high=0.5, low_open=True,
                                  help="user arrays: share held out for the test NLL")
    seed: int = option(0, help="seed of the toy draw / the train-test split")
    standardize: bool = option(True, help="learn on z-scored data (recommended); image "
                               "sets use one scalar mean and sd for all pixels")

    def validate(self) -> None:
        if self.name in ARRAY_FORMATS or self.name in IMAGE_NEEDS_PATH:
            if not self.path:
                raise ValueError(f"data.path is required when data.name = {self.name!r}")
        elif self.name == "digits" and self.path:
            raise ValueError("data.path does not apply to data.name = 'digits' (built in)")
        elif self.name not in IMAGE_DATASETS and not _is_toy(self.name):
            raise ValueError(f"data.name must be one of "
                             f"{TOY_NAMES + list(IMAGE_DATASETS) + list(ARRAY_FORMATS)}, "
                             f"got {self.name!r}")


@dataclass
class ModelConfig:
    name: str = option("mlp", choices=["mlp", "rbm"],
                       help="mlp: MLPEnergy; rbm: GaussianBernoulliRBM (exact log Z)")
    n_hidden: int = option(10, low=1, high=24, help="rbm: hidden units (log Z enumerates "
                           "2^n_hidden states)")
    width: int = option(64, low=1)
    depth: int = option(3, low=1)
    activation: str = option("leaky_relu",
                             choices=["silu", "leaky_relu", "elu", "tanh", "softplus"])
    spectral_norm: bool = option(False)


@dataclass
class SamplerConfig:
    name: str = option("langevin", choices=sorted(SAMPLERS))
    step_size: float = option(0.005, low=0.0, low_open=True,
                              help="s in x ← x − s∇U + σξ (the papers' ε²/2)")
    noise_scale: float | None = option(None, low=0.0,
                                       help="σ; default √(2s), i.e. temperature 1")
    threshold: float | None = option(None, low=0.0, low_open=True, help="AniLA's b")
    mode: str = option("elementwise", choices=["elementwise", "norm"], help="AniLA's form")
    bandwidth: float | None = option(None, low=0.0, low_open=True,
                                     help="svgd: RBF bandwidth h; default med²/log n")
    normalize: bool = option(False, help="svgd: divide by Σⱼ k instead of n")
    n_leapfrog: int = option(5, low=1)
    friction: float = option(1.0, low=0.0, low_open=True)
    grad_clip: float | None = option(None, low=0.0, low_open=True,
                                     help="cap on each chain's ‖∇U‖ inside the sampler")
    clamp: list[float] | None = option(None, help="[low, high] box for the states")

    def validate(self) -> None:
        if self.clamp is not None and (len(self.clamp) != 2 or not self.clamp[0] < self.clamp[1]):
            raise ValueError(f"sampler.clamp must be [low, high] with low < high, got {self.clamp}")
        if self.name == "anila" and self.threshold is None:
            raise ValueError("sampler.threshold (AniLA's b) is required for sampler.name = 'anila'")


@dataclass
class MethodConfig:
    name: str = option("persistent", choices=list(METHODS),
                       help="short_run / persistent / cd (maximum likelihood), steincd, "
                       "steingan (with cd_prob > 0: SteinCD-GAN(α))")
    n_steps: int = option(20, low=1, help="sampler steps per iteration (K)")
    n_chains: int | None = option(None, low=1, help="negatives per iteration; default batch")
    init: str = option("uniform", choices=["uniform", "gaussian"],
                       help="noise the chains start from (standardised units)")
    init_scale: float = option(2.5, low=0.0, low_open=True,
                               help="uniform: half-width of the box; gaussian: sd")
    buffer_size: int = option(500, low=1, help="persistent: replay buffer capacity")
    reinit_prob: float = option(0.05, low=0.0, high=1.0, help="persistent: restart rate")
    energy_penalty: float = option(0.0, low=0.0, help="α in α·mean(U⁺² + U⁻²)")
    data_noise: float = option(0.0, low=0.0, help="sd of noise added to data batches")
    invariant_tuning: bool = option(False, help="learning rate × ε²/2 (Anatomy)")
    symmetric: bool = option(False, help="steincd: the symmetric update, Eq. (17)")
    kernel: str = option("rbf", choices=["rbf", "features", "none"],
                         help="steincd / steingan: SVGD kernel on x or on the energy's "
                         "features; steingan also none (plain gradient, no repulsion)")
    cd_prob: float = option(0.0, low=0.0, high=1.0,
                            help="steingan: α, share of SteinCD energy updates")
    discount: float = option(0.0, low=0.0, high=1.0, help="steingan: γ in mean U⁺ − "
                             "(1 − γ) mean U⁻ (paper: 0.7)")
    discount_high: float | None = option(None, low=0.0, high=1.0, help="steingan: γ while "
                                         "mean U⁺ > mean U⁻ (paper: 0.9)")

    def validate(self) -> None:
        for key in ("discount", "discount_high"):
            value = getattr(self, key)
            if value is not None and value >= 1.0:
                raise ValueError(f"method.{key} must be < 1 (the negatives' weight is 1 − γ), "
                                 f"got {value}")
        stein_only = {"kernel": "rbf", "symmetric": False, "cd_prob": 0.0, "discount": 0.0,
                      "discount_high": None}
        applies = {"steincd": ("kernel", "symmetric"),
                   "steingan": ("kernel", "cd_prob", "discount", "discount_high")}
        for key, default in stein_only.items():
            if getattr(self, key) != default and key not in applies.get(self.name, ()):
                raise ValueError(f"method.{key} does not apply to method.name = {self.name!r}")
        if self.name == "steincd" and self.kernel == "none":
            raise ValueError("method.kernel = 'none' applies to steingan only (SteinCD "
                             "needs the kernel's Stein direction)")


@dataclass
class GeneratorConfig:
    name: str = option("mlp", choices=["mlp", "deconv"],
                       help="generator network of steingan (deconv: image data)")
    latent_dim: int = option(16, low=1, help="dimension of the noise ξ ~ N(0, I)")
    width: int = option(128, low=1, help="hidden width (mlp) / channels (deconv)")
    depth: int = option(2, low=1, help="mlp: hidden layers")


@dataclass
class TrainConfig:
    iterations: int = option(6000, low=1)
    batch_size: int = option(200, low=1)
    optimizer: str = option("adam", choices=["adam", "sgd"])
    lr: float = option(1e-3, low=0.0, low_open=True)
    lr_generator: float | None = option(None, low=0.0, low_open=True,
                                        help="learning rate of a generator; default train.lr")
    beta1: float = option(0.5, low=0.0, high=1.0)
    beta2: float = option(0.999, low=0.0, high=1.0)
    weight_decay: float = option(0.0, low=0.0)
    lr_schedule: str = option("cosine", choices=["constant", "cosine"])
    grad_clip: float | None = option(None, low=0.0, low_open=True,
                                     help="cap on the parameter-gradient norm")
    seed: int = option(0)
    device: str = option("cpu", help="cpu, cuda, cuda:1, ...")
    threads: int = option(1, low=0, help="CPU threads for torch; 0: torch's default. One "
                          "thread is fastest for small models and never stalls on a busy machine")
    log_every: int = option(10, low=1)
    ckpt_every: int = option(500, low=1)
    plot_every: int = option(2000, low=0, help="0: plot only at the end")
    longrun_every: int = option(0, low=0, help="0: long-run check only at the end")
    longrun_factor: int = option(20, low=1, help="long-run chains run factor × n_steps")
    on_nonfinite: str = option("stop", choices=["stop", "rollback"])
    rollback_lr_factor: float = option(0.5, low=0.0, high=1.0, low_open=True)
    max_rollbacks: int = option(3, low=0)
    tensorboard: bool = option(False)
    progress: bool = option(True)


@dataclass
class RunConfig:
    data: DataConfig
    model: ModelConfig
    sampler: SamplerConfig
    method: MethodConfig
    train: TrainConfig
    generator: GeneratorConfig


# -- data ---------------------------------------------------------------------------------


def _is_toy(name: str) -> bool:
    try:
        canonical_name(name)
    except ValueError:
        return False
    return True


@dataclass
class Data:
    """Train/test tensors in standardised space and the map back to data space."""

    name: str
    train: Tensor
    test: Tensor
    shift: Tensor
    scale: Tensor
    log_density: Any  # data-space log p_data (x) -> (B,), or None
    bounds: tuple[tuple[float, float], tuple[float, float]] | None  # data-space plot box
    image_shape: tuple[int, ...] | None = None  # (C, H, W) of flattened image rows

    @property
    def dim(self) -> int:
        return int(self.train.shape[1])

    def to_data_space(self, z: Tensor) -> Tensor:
        return z * self.scale.to(z) + self.shift.to(z)


def load_images(cfg: DataConfig) -> Data:
    """An image set as flat rows ``(N, C·H·W)`` with pixels in [0, 1] (data space); with
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
    train, test = train.reshape(train.shape[0], -1), test.reshape(test.shape[0], -1)
    d = train.shape[1]
    if cfg.standardize:
        shift, scale = train.mean().expand(d).clone(), train.std().clamp_min(1e-6).expand(d).clone()
    else:
        shift, scale = torch.zeros(d), torch.ones(d)
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
        if x.shape[0] < 4:
            raise ConfigError(f"{path}: need at least 4 rows to split train/test, got {x.shape[0]}")
        gen = torch.Generator().manual_seed(cfg.seed)
        perm = torch.randperm(x.shape[0], generator=gen)
        n_test = max(1, int(round(cfg.test_fraction * x.shape[0])))
        train, test = x[perm[n_test:]], x[perm[:n_test]]
        log_density, bounds = None, None
        name = f"{cfg.name}:{path.name}"
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
        bounds = tuple((float(a), float(b)) for a, b in zip(lo - pad, hi + pad, strict=True))
    return Data(name, (train - shift) / scale, (test - shift) / scale, shift, scale,
                log_density, bounds)


class DataSpaceEnergy(nn.Module):
    """``U_x(x) = U_z((x − shift)/scale)``: the learned energy in data coordinates."""

    def __init__(self, energy: nn.Module, shift: Tensor, scale: Tensor) -> None:
        super().__init__()
        self.energy = energy
        self.register_buffer("shift", shift.detach().clone())
        self.register_buffer("scale", scale.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        p = next(self.energy.parameters(), None)
        z = (x - self.shift.to(x)) / self.scale.to(x)
        return self.energy(z if p is None else z.to(p.dtype)).to(x.dtype)


# -- model, sampler, method ---------------------------------------------------------------


def build_energy(cfg: ModelConfig, dim: int) -> nn.Module:
    if cfg.name == "rbm":
        return GaussianBernoulliRBM(dim, cfg.n_hidden)
    return MLPEnergy(dim, width=cfg.width, depth=cfg.depth, activation=cfg.activation,
                     spectral_norm=cfg.spectral_norm)


def build_sampler(cfg: SamplerConfig, features: Any = None) -> Sampler:
    kwargs: dict[str, Any] = {"step_size": cfg.step_size, "grad_clip": cfg.grad_clip,
                              "clamp": None if cfg.clamp is None else tuple(cfg.clamp)}
    if cfg.name in ("langevin", "anila") and cfg.noise_scale is not None:
        kwargs["noise_scale"] = cfg.noise_scale
    if cfg.name == "anila":
        kwargs.update(threshold=cfg.threshold, mode=cfg.mode)
    elif cfg.name == "hmc":
        kwargs["n_leapfrog"] = cfg.n_leapfrog
    elif cfg.name == "underdamped":
        kwargs["friction"] = cfg.friction
    elif cfg.name == "svgd":
        kwargs.update(bandwidth=cfg.bandwidth, normalize=cfg.normalize, features=features)
    try:
        return make_sampler(cfg.name, **kwargs)
    except ValueError as e:
        raise ConfigError(f"[sampler] {e}") from None


def build_generator(cfg: GeneratorConfig, data: Data) -> nn.Module:
    """The generator of SteinGAN, mapping ξ ~ N(0, I) to (standardised) data rows."""
    shape = data.image_shape if cfg.name == "deconv" else (data.dim,)
    if shape is None:
        raise ConfigError("generator.name = 'deconv' needs image data (data.name = digits, ...)")
    try:
        if cfg.name == "deconv":
            net: nn.Module = DeconvGenerator(cfg.latent_dim, shape, channels=cfg.width)
        else:
            net = MLPGenerator(cfg.latent_dim, shape, width=cfg.width, depth=cfg.depth)
    except ValueError as e:
        raise ConfigError(f"[generator] {e}") from None
    return FlatOutput(net, data.dim) if cfg.name == "deconv" else net


class FlatOutput(nn.Module):
    """Wraps an image generator so it emits flat rows ``(B, C·H·W)`` like the data."""

    def __init__(self, net: nn.Module, dim: int) -> None:
        super().__init__()
        self.net, self.dim = net, dim
        self.latent_dim = net.latent_dim

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).reshape(z.shape[0], self.dim)


def build_stein_method(cfg: RunConfig, energy: nn.Module, data: Data) -> Method:
    m = cfg.method
    if cfg.sampler.name != "svgd":
        raise ConfigError(f"method.name = {m.name!r} needs sampler.name = 'svgd', "
                          f"got {cfg.sampler.name!r}")
    features = None
    if m.kernel == "features":
        features = getattr(energy, "features", None)
        if features is None:
            raise ConfigError(f"method.kernel = 'features': model {cfg.model.name!r} has no "
                              "features()")
    sampler = build_sampler(cfg.sampler, features=features)
    gen = (None if m.name == "steincd" else
           build_generator(cfg.generator, data).to(data.train.device, data.train.dtype))
    try:
        if gen is None:
            return SteinCD(energy, sampler, symmetric=m.symmetric,
                           energy_penalty=m.energy_penalty)
        return SteinGAN(energy, gen, sampler, kernel=m.kernel, cd_prob=m.cd_prob,
                        discount=m.discount, discount_high=m.discount_high,
                        energy_penalty=m.energy_penalty, n_samples=m.n_chains)
    except ValueError as e:
        raise ConfigError(f"[method] {e}") from None


def build_method(cfg: RunConfig, energy: nn.Module, data: Data) -> Method:
    m = cfg.method
    if m.name in ("steincd", "steingan"):
        return build_stein_method(cfg, energy, data)
    noise = NoiseInit(
        (data.dim,),
        kind=m.init,
        scale=m.init_scale,
        low=-m.init_scale,
        high=m.init_scale,
        dtype=data.train.dtype,
        device=data.train.device,
    )
    chains = None
    if m.name == "short_run":
        chains = noise
    elif m.name == "persistent":
        chains = ReplayBuffer(noise, capacity=m.buffer_size, reinit_prob=m.reinit_prob)
        if (m.n_chains or cfg.train.batch_size) > m.buffer_size:
            raise ConfigError("method.buffer_size must be >= the number of chains per iteration")
    return MaximumLikelihood(
        energy,
        build_sampler(cfg.sampler),
        chains,
        regime=m.name,
        n_steps=m.n_steps,
        n_chains=m.n_chains,
        energy_penalty=m.energy_penalty,
        data_noise=m.data_noise,
        invariant_tuning=m.invariant_tuning,
        noise=noise,
    )
