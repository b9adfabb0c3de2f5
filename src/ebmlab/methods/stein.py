"""Stein methods: SteinCD and amortized MLE / SteinGAN (Liu & Wang, the SteinCD-SteinGAN
paper in ``shared/papers``; equation numbers are that paper's).

Both update the energy with the CD-type gradient (Eq. 13 / Eq. 23)

    ∇_θ [ mean U(x⁺) − mean U(x⁻) ]        (f = −U),

and differ in where the negatives ``x⁻`` come from:

* :class:`SteinCD` (Algorithm 1): one SVGD step from the data batch,
  ``x⁻ = x⁺ + ε φ*(x⁺)``. ``symmetric=True`` is Eq. (17): the positives are
  moved the other way, ``x⁺ − ε φ*(x⁺)``, a central finite difference of Stein
  score matching (Eq. 15).
* :class:`SteinGAN` (Algorithm 2, amortized MLE): a generator ``x⁻ = G(ξ; η)``
  trained by back-propagating the SVGD direction, ``η ← η + ε Σᵢ ∂_η G(ξᵢ) φ*(xᵢ⁻)``
  (Eq. 21), i.e. minimising ``−mean ⟨G(ξᵢ), stop_grad φ*(xᵢ⁻)⟩`` with the
  generator's optimiser. ``kernel="none"`` replaces φ* by the plain gradient
  ``−∇U(xᵢ)`` per particle (the paper's "without the kernel": amortized MAP, no
  repulsion). ``cd_prob = α`` gives SteinCD-GAN(α): with probability α an
  iteration's energy update uses SteinCD negatives instead of the generator's
  (the generator is trained every iteration). The paper's stabiliser, a
  discount ``γ`` on the negative term, ``mean U(x⁺) − (1 − γ) mean U(x⁻)``,
  raised to ``discount_high`` while the data's energy exceeds the samples'
  (Sec. 5.2, "Stabilization"; it modifies Eq. 23, so SteinCD iterations of
  SteinCD-GAN(α) keep γ = 0), is off by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ebmlab.chains import ChainSource, GeneratorInit
from ebmlab.config import ConfigError, option
from ebmlab.generators import Generator
from ebmlab.methods.base import (
    Batch,
    Method,
    SamplingTarget,
    StepOutput,
    batch_x,
    contrastive_loss,
)
from ebmlab.methods.mle import energy_target
from ebmlab.methods.registry import MethodOptions, MethodSpec, register
from ebmlab.samplers.base import clip_grad_norm, energy_and_grad, frozen
from ebmlab.samplers.svgd import SVGD

if TYPE_CHECKING:
    from ebmlab.experiment import BuildContext

KERNELS = ("rbf", "features", "none")


def _stein_cd_negatives(energy: nn.Module, svgd: SVGD, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(φ*(x), x + ε φ*(x), ∇U(x))`` for a batch (one SVGD step, Algorithm 1 step 2)."""
    phi, _, grad = svgd.direction(energy, x.detach())
    x_neg = (x + svgd.step_size * phi).detach()
    svgd._clamp_(x_neg)
    return phi, x_neg, grad


def _mean_norm(v: Tensor) -> float:
    return float(v.reshape(v.shape[0], -1).norm(dim=1).mean())


class SteinCD(Method):
    """Stein contrastive divergence: negatives are one SVGD step from the data."""

    name = "steincd"

    def __init__(self, energy: nn.Module, sampler: SVGD, *, symmetric: bool = False,
                 energy_penalty: float = 0.0, noise: ChainSource | None = None,
                 sample_steps: int = 100) -> None:
        if not isinstance(sampler, SVGD):
            raise ValueError(f"SteinCD needs an SVGD sampler, got {type(sampler).__name__}")
        self.energy, self.sampler = energy, sampler
        self.symmetric = bool(symmetric)
        self.energy_penalty = float(energy_penalty)
        self.noise, self.sample_steps = noise, sample_steps

    def modules(self) -> dict[str, nn.Module]:
        return {"energy": self.energy}

    def target(self) -> SamplingTarget | None:
        """SVGD particles from noise (Gibbs sweeps for an RBM)."""
        if self.noise is None:
            return None
        return energy_target(self.energy, self.sampler, self.noise, self.sample_steps)

    def step(self, batch: Batch, rng: torch.Generator | None = None) -> StepOutput:
        x = batch_x(batch)
        phi, x_neg, grad = _stein_cd_negatives(self.energy, self.sampler, x)
        x_pos = (x - self.sampler.step_size * phi).detach() if self.symmetric else x
        loss, metrics = contrastive_loss(self.energy, x_pos, x_neg,
                                         energy_penalty=self.energy_penalty)
        metrics.update(r_t=self.sampler.step_size * _mean_norm(grad), phi_norm=_mean_norm(phi))
        return StepOutput(losses={"energy": loss}, metrics=metrics, negatives=x_neg)


class SteinGAN(Method):
    """Amortized MLE: an energy and a generator trained together (Algorithm 2)."""

    name = "steingan"
    d_st_settles = False  # the generator lags the energy: d_st stays positive

    def __init__(
        self,
        energy: nn.Module,
        generator: Generator,
        sampler: SVGD,
        *,
        kernel: str = "rbf",
        cd_prob: float = 0.0,
        discount: float = 0.0,
        discount_high: float | None = None,
        energy_penalty: float = 0.0,
        n_samples: int | None = None,
    ) -> None:
        if not isinstance(sampler, SVGD):
            raise ValueError(f"SteinGAN needs an SVGD sampler, got {type(sampler).__name__}")
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        if kernel == "features" and sampler.features is None:
            raise ValueError("kernel='features' needs an SVGD sampler built with features=...")
        if not 0.0 <= cd_prob <= 1.0:
            raise ValueError(f"cd_prob must be in [0, 1], got {cd_prob}")
        for key, value in (("discount", discount), ("discount_high", discount_high)):
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"{key} must be in [0, 1), got {value}")
        self.energy, self.generator, self.sampler = energy, generator, sampler
        self.kernel, self.cd_prob = kernel, float(cd_prob)
        self.discount = float(discount)
        self.discount_high = None if discount_high is None else float(discount_high)
        self.energy_penalty = float(energy_penalty)
        self.n_samples = n_samples
        self.name = "steingan" if cd_prob == 0 else "steincd_gan"

    def modules(self) -> dict[str, nn.Module]:
        return {"energy": self.energy, "generator": self.generator}

    def generate(self, n: int, rng: torch.Generator | None = None) -> Tensor:
        """``n`` generator samples ``G(ξ)``, ξ ~ N(0, I), shaped like the data."""
        return self.generator(self.generator.sample_latent(n, rng))

    def _generate_for_sampling(self, n: int, rng: torch.Generator | None) -> Tensor:
        with torch.no_grad(), frozen(self.generator):  # eval mode: no batch-norm updates
            return self.generate(n, rng)

    def target(self) -> SamplingTarget:
        """The generator's samples (longer runs continue them with SVGD on the energy)."""
        return SamplingTarget(self.energy, self.sampler, GeneratorInit(self._generate_for_sampling),
                              0, origin="generator samples")

    def stein_direction(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(φ*(x), ∇U(x))`` for the generator update; ``kernel="none"``: φ = ``−∇U(x)``
        per particle."""
        if self.kernel == "none":
            _, g = energy_and_grad(self.energy, x)
            g = clip_grad_norm(g, self.sampler.grad_clip)
            return -g, g
        phi, _, g = self.sampler.direction(self.energy, x)
        return phi, g

    def step(self, batch: Batch, rng: torch.Generator | None = None) -> StepOutput:
        batch = batch_x(batch)
        n = self.n_samples or batch.shape[0]
        x_gen = self.generate(n, rng).reshape(n, *batch.shape[1:])
        phi, grad = self.stein_direction(x_gen.detach())
        phi = phi.detach()
        # Eq. (21) as a loss: its gradient w.r.t. η is −(1/n) Σᵢ ∂_η G(ξᵢ) φ*(xᵢ).
        loss_gen = -(x_gen * phi).reshape(n, -1).sum(dim=1).mean()
        use_cd = self.cd_prob > 0 and bool(
            torch.rand((), generator=rng, device=batch.device) < self.cd_prob)
        x_neg = (_stein_cd_negatives(self.energy, self.sampler, batch)[1] if use_cd
                 else x_gen.detach())
        gamma = 0.0 if use_cd else self.discount
        if not use_cd and self.discount_high is not None:
            with torch.no_grad():
                if bool(self.energy(batch).mean() > self.energy(x_neg).mean()):
                    gamma = self.discount_high
        loss, metrics = contrastive_loss(self.energy, batch, x_neg,
                                         energy_penalty=self.energy_penalty,
                                         neg_weight=1.0 - gamma)
        metrics.update(r_t=self.sampler.step_size * _mean_norm(grad), phi_norm=_mean_norm(phi),
                       cd_update=float(use_cd))
        if self.discount_high is not None or self.discount > 0:
            metrics["discount"] = gamma
        return StepOutput(losses={"energy": loss, "generator": loss_gen}, metrics=metrics,
                          negatives=x_neg)


# -- options and registration ------------------------------------------------------------


@dataclass
class SteinCDOptions(MethodOptions):
    kernel: str = option("rbf", choices=["rbf", "features"],
                         help="SVGD kernel on x, or on the energy's features()")
    symmetric: bool = option(False, help="the symmetric update, Eq. (17)")
    energy_penalty: float = option(0.0, low=0.0, help="α in α·mean(U⁺² + U⁻²)")
    init_scale: float = option(2.5, low=0.0, low_open=True,
                               help="model samples: SVGD particles from U([-s, s]) noise")
    sample_steps: int = option(100, low=1, help="model samples: SVGD steps from noise")


@dataclass
class SteinGANOptions(MethodOptions):
    kernel: str = option("rbf", choices=["rbf", "features", "none"],
                         help="SVGD kernel on x, on the energy's features(), or none (plain "
                         "gradient, no repulsion)")
    cd_prob: float = option(0.0, low=0.0, high=1.0, help="α, share of SteinCD energy updates")
    discount: float = option(0.0, low=0.0, high=1.0, help="γ in mean U⁺ − (1 − γ) mean U⁻ "
                             "(paper: 0.7)")
    discount_high: float | None = option(None, low=0.0, high=1.0,
                                         help="γ while mean U⁺ > mean U⁻ (paper: 0.9)")
    energy_penalty: float = option(0.0, low=0.0, help="α in α·mean(U⁺² + U⁻²)")
    n_chains: int | None = option(None, low=1, help="generator samples per iteration; "
                                  "default batch")

    def validate(self) -> None:
        for key in ("discount", "discount_high"):
            value = getattr(self, key)
            if value is not None and value >= 1.0:
                raise ValueError(f"method.{key} must be < 1 (the negatives' weight is 1 − γ), "
                                 f"got {value}")


def _svgd(ctx: BuildContext, kernel: str) -> SVGD:
    features = None
    if kernel == "features":
        features = getattr(ctx.energy, "features", None)
        if features is None:
            raise ConfigError(f"method.kernel = 'features': model {ctx.cfg.model.name!r} has "
                              "no features()")
    sampler = ctx.sampler("negatives", features=features)
    if not isinstance(sampler, SVGD):
        raise ConfigError(f"method.name = {ctx.cfg.method.name!r} needs "
                          f"samplers.negatives.name = 'svgd', got {sampler.name!r}")
    return sampler


def build_steincd(ctx: BuildContext, opts: SteinCDOptions) -> SteinCD:
    return SteinCD(ctx.energy, _svgd(ctx, opts.kernel), symmetric=opts.symmetric,
                   energy_penalty=opts.energy_penalty, noise=ctx.noise("uniform", opts.init_scale),
                   sample_steps=opts.sample_steps)


def build_steingan(ctx: BuildContext, opts: SteinGANOptions) -> SteinGAN:
    try:
        return SteinGAN(ctx.energy, ctx.generator(), _svgd(ctx, opts.kernel), kernel=opts.kernel,
                        cd_prob=opts.cd_prob, discount=opts.discount,
                        discount_high=opts.discount_high, energy_penalty=opts.energy_penalty,
                        n_samples=opts.n_chains)
    except ValueError as e:
        raise ConfigError(f"[method] {e}") from None


SVGD_NEGATIVES = {"negatives": {"name": "svgd", "step_size": 0.1}}
register(MethodSpec("steincd", SteinCDOptions, build_steincd, roles=SVGD_NEGATIVES,
                    help="Stein contrastive divergence (Alg. 1): one SVGD step from the data"))
register(MethodSpec("steingan", SteinGANOptions, build_steingan, roles=SVGD_NEGATIVES,
                    groups=("energy", "generator"), sections=("generator",),
                    help="amortized MLE / SteinGAN (Alg. 2), with cd_prob > 0 SteinCD-GAN(α)"))
