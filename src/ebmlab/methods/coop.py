"""MCMC teaching: an energy learned together with a generator (CoopNets) or a VAE (VALS).

Equation numbers are those of the VALS paper (Xie, Zheng & Li, "Energy-based
probability estimation with variational ancestral Langevin sampler", in
``shared/papers``), which also summarises CoopNets (Xie et al., "Cooperative training
of descriptor and generator networks").

**Ancestral Langevin sampling** (Eq. 4–5), every iteration and for model samples:
``ẑ ~ N(0, I)``, ``x̂ = g(ẑ)``, then K steps of the ``negatives`` sampler (any sampler
of the registry; the papers use Langevin, Eq. 3) on the energy ``U`` from ``x̂`` give
the revised samples ``x̃``. The energy learns by maximum likelihood with ``x̃`` as
negatives (Eq. 6 / 11), ``∇_θ [mean U(x⁺) − mean U(x̃)]``. (Eq. 4 adds the generator's
noise ``ε`` to ``x̂``; like the reference code, the chains start at the mean ``g(ẑ)``.)

The generator then learns from ``x̃`` (MCMC teaching):

* :class:`CoopNets` — alternating back-propagation: ``K_z`` steps of the ``inference``
  sampler on the latent posterior ``log N(z; 0, I) + log N(x̃; g(z), σ² I)``
  (:class:`~ebmlab.generators.GeneratorPosterior`), started from the ``ẑ`` that
  produced ``x̂``, give ``z̃``; then a step on ``mean ‖x̃ − g(z̃)‖² / (2σ²)`` (Eq. 9).
  ``K_z = 0`` (the reference code's default) regresses ``x̃`` on the known ``ẑ``.
* :class:`VALS` — variational MCMC teaching: a Gaussian encoder ``π_β(z | x)`` and the
  generator as decoder form a VAE trained on ``x̃`` (Eq. 12),
  ``mean [‖x̃ − g(z)‖² / (2σ²) + γ · KL(π_β(z | x̃) ‖ N(0, I))]``, ``z ~ π_β(z | x̃)``
  reparametrised; ``−log q(x̃ | z)`` is the reconstruction up to a constant, and γ is
  ``kl_weight``. Encoder and decoder are one parameter group, ``"vae"``.

Model samples (``target()``, ``sample()``, ``load_run(path).sample(n)``, the long-run
check) are ancestral Langevin samples: generator (VALS: decoder) of ``z ~ N(0, I)``,
then K revision steps.

**The divergence monitor.** The negatives are MCMC samples of the current energy, but
started from a generator that lags it and revised for only K steps, so ``d_st =
mean U(x⁺) − mean U(x̃)`` need not oscillate around 0: early in learning the energy
makes data much lower than the revised samples, and ``d_st`` stays negative for hundreds
of iterations while the generator catches up (measured on the presets: see
``docs/notes-coop.md``). These methods therefore set ``d_st_settles = False``: the
monitor watches the energy scale only, so healthy runs are never stopped for a
one-sided ``d_st``.

Choices that the papers' reference code makes and that are options here: the Gaussian
reference term of the descriptor, ``U(x) = f(x) + ‖x‖²/(2σ_ref²)``, is
``model.reference_sd`` (reference code: 0.016 in its [−1, 1] pixel units); noise in the
revision Langevin is ``samplers.negatives.noise_scale`` (CoopNets' code: on; VALS' code:
off, ``noise_scale = 0``); the generator's ``σ`` is ``generator_sd`` (reference: 0.3);
the VALS reference code uses ``‖x̃ − g(z)‖² + γ KL`` with γ = 2 (CIFAR-10) or 3 (MNIST),
i.e. ``σ² = ½`` in its [−1, 1] pixel units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ebmlab.chains import GeneratorInit
from ebmlab.config import option
from ebmlab.generators.base import Generator
from ebmlab.generators.encoder import GaussianEncoder, kl_standard_normal
from ebmlab.generators.posterior import GeneratorPosterior
from ebmlab.methods.base import (
    Batch,
    Method,
    SamplingTarget,
    StepOutput,
    batch_x,
    contrastive_loss,
    sample_with_diagnostics,
)
from ebmlab.methods.registry import MethodOptions, MethodSpec, register
from ebmlab.samplers.base import Sampler, frozen

if TYPE_CHECKING:
    from ebmlab.experiment import BuildContext


def _flat_sq(a: Tensor, b: Tensor) -> Tensor:
    """``‖a − b‖²`` per row, ``(B,)``."""
    return (a - b).reshape(a.shape[0], -1).square().sum(1)


def _missing_mask(x: Tensor, mask: Tensor) -> Tensor:
    """``mask`` (1 = missing) broadcast to ``x``'s shape, in ``x``'s dtype; one-line errors."""
    if not isinstance(mask, Tensor):
        raise ValueError(f"mask must be a tensor, got {type(mask).__name__}")
    try:
        full = torch.broadcast_to(mask.to(x.device, x.dtype), x.shape)
    except RuntimeError:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast against "
                         f"images of shape {tuple(x.shape)}") from None
    if not bool(((full == 0) | (full == 1)).all()):
        raise ValueError("mask must hold only 0 (observed) and 1 (missing)")
    return full


class AncestralLangevin(Method):
    """Shared part of CoopNets and VALS: an energy, a generator ``g`` and the revision
    sampler; ancestral Langevin sampling (Eq. 4–5) and the energy's update (Eq. 6)."""

    d_st_settles = False  # revised samples start from a lagging generator (module docstring)
    origin = "generator samples"

    def __init__(self, energy: nn.Module, generator: Generator, sampler: Sampler, *,
                 n_steps: int, generator_sd: float = 0.3, n_chains: int | None = None,
                 energy_penalty: float = 0.0, data_noise: float = 0.0) -> None:
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be an integer >= 1 (K revision steps), got "
                             f"{n_steps!r}")
        if not generator_sd > 0:
            raise ValueError(f"generator_sd must be > 0, got {generator_sd!r}")
        if not isinstance(getattr(generator, "latent_dim", None), int):
            raise ValueError("the generator must have an integer latent_dim")
        self.energy, self.generator, self.sampler = energy, generator, sampler
        self.n_steps, self.generator_sd = n_steps, float(generator_sd)
        self.n_chains, self.energy_penalty = n_chains, float(energy_penalty)
        if not data_noise >= 0:
            raise ValueError(f"data_noise must be >= 0, got {data_noise!r}")
        self.data_noise = float(data_noise)

    def latent(self, n: int, rng: torch.Generator | None = None) -> Tensor:
        """``ẑ ~ N(0, I)``, ``(n, latent_dim)``, on the generator's device and dtype."""
        p = next(self.generator.parameters())
        return torch.randn((n, self.generator.latent_dim), generator=rng, dtype=p.dtype,
                           device=p.device)

    def decode(self, z: Tensor) -> Tensor:
        """``g(z)`` without a graph, the generator in eval mode."""
        with torch.no_grad(), frozen(self.generator):
            return self.generator(z)

    def _prior_samples(self, n: int, rng: torch.Generator | None) -> Tensor:
        return self.decode(self.latent(n, rng))

    def target(self) -> SamplingTarget:
        """Ancestral Langevin samples: ``g(z)``, ``z ~ N(0, I)``, then K revision steps."""
        return SamplingTarget(self.energy, self.sampler, GeneratorInit(self._prior_samples),
                              self.n_steps, origin=self.origin)

    def revise(self, x_hat: Tensor, rng: torch.Generator | None, *,
               energy: nn.Module | None = None, mask: Tensor | None = None
               ) -> tuple[Tensor, dict[str, float]]:
        """``x̃``: K steps of the revision sampler from ``x̂`` (Eq. 5), and its diagnostics
        (``r_t`` = step × mean ‖∇U‖, the acceptance of a Metropolis sampler). ``energy``
        (default ``U``) and ``mask`` (1 = missing; default all) for the conditional methods:
        only the missing pixels are revised."""
        x_tilde, metrics = sample_with_diagnostics(
            self.sampler, self.energy if energy is None else energy, x_hat, self.n_steps, rng,
            mask)
        metrics["revision"] = float(_flat_sq(x_tilde, x_hat).sqrt().mean())
        return x_tilde, metrics

    def noisy_data(self, batch: Batch, rng: torch.Generator | None) -> Tensor:
        """The batch's data, plus ``N(0, data_noise²)`` when ``data_noise > 0``."""
        x = batch_x(batch)
        if self.data_noise > 0:
            x = x + self.data_noise * torch.randn(x.shape, generator=rng, dtype=x.dtype,
                                                  device=x.device)
        return x

    def _energy_update(self, batch: Batch, rng: torch.Generator | None
                       ) -> tuple[Tensor, Tensor, Tensor, dict[str, float]]:
        """``(ẑ, x̃, energy loss, metrics)``: ancestral Langevin negatives and Eq. (6), the
        data with ``N(0, data_noise²)`` added when ``data_noise > 0`` (as in short-run ML:
        exactly constant pixels, the blank background of MNIST, otherwise let the
        energy's curvature there grow without bound)."""
        x_pos = self.noisy_data(batch, rng)
        n = self.n_chains or x_pos.shape[0]
        z_hat = self.latent(n, rng)
        with torch.no_grad():
            x_hat = self.generator(z_hat).reshape(n, *x_pos.shape[1:])
        x_tilde, revision = self.revise(x_hat, rng)
        loss, metrics = contrastive_loss(self.energy, x_pos, x_tilde,
                                         energy_penalty=self.energy_penalty)
        metrics.update(revision)
        return z_hat, x_tilde, loss, metrics

    def reconstruction(self, x: Tensor, z: Tensor) -> Tensor:
        """``‖x − g(z)‖² / (2σ²)`` per row (``−log N(x; g(z), σ²I)`` up to a constant);
        keeps the generator's graph."""
        return _flat_sq(x, self.generator(z).reshape(x.shape)) / (2 * self.generator_sd**2)

    def completion_start(self, x: Tensor, mask: Tensor, rng: torch.Generator | None
                         ) -> Tensor:
        """Initial values of whole images ``x`` (standardised, ``(B, *shape)``) for image
        completion; a masked sampler then fills the pixels where ``mask == 1``."""
        raise NotImplementedError


class CoopNets(AncestralLangevin):
    """Cooperative learning: the generator learns from the revised samples by alternating
    back-propagation (``K_z`` inference steps from ``ẑ``, then a regression step)."""

    name = "coopnets"

    def __init__(self, energy: nn.Module, generator: Generator, sampler: Sampler,
                 inference: Sampler, *, n_steps: int, inference_steps: int = 0,
                 completion_steps: int = 30, **kwargs: Any) -> None:
        super().__init__(energy, generator, sampler, n_steps=n_steps, **kwargs)
        for key, value in (("inference_steps", inference_steps),
                           ("completion_steps", completion_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{key} must be an integer >= 0, got {value!r}")
        self.inference, self.inference_steps = inference, inference_steps
        self.completion_steps = completion_steps

    def modules(self) -> dict[str, nn.Module]:
        return {"energy": self.energy, "generator": self.generator}

    def infer(self, x: Tensor, z0: Tensor, n_steps: int, rng: torch.Generator | None,
              observed: Tensor | None = None, generator: nn.Module | None = None) -> Tensor:
        """``n_steps`` of the ``inference`` sampler on the posterior of ``z`` given ``x``
        (given its ``observed`` entries), from ``z0``; ``generator`` (default ``g``) maps
        ``z`` to images."""
        if n_steps == 0:
            return z0
        posterior = GeneratorPosterior(self.generator if generator is None else generator, x,
                                       self.generator_sd, observed)
        return self.inference.run(posterior, z0, n_steps, generator=rng)

    def step(self, batch: Batch, rng: torch.Generator | None = None) -> StepOutput:
        z_hat, x_tilde, loss_energy, metrics = self._energy_update(batch, rng)
        z_tilde = self.infer(x_tilde, z_hat, self.inference_steps, rng)
        if self.inference_steps:
            metrics["inference_shift"] = float((z_tilde - z_hat).norm(dim=1).mean())
        loss_generator = self.reconstruction(x_tilde, z_tilde).mean()
        return StepOutput(losses={"energy": loss_energy, "generator": loss_generator},
                          metrics=metrics, negatives=x_tilde)

    def completion_start(self, x: Tensor, mask: Tensor, rng: torch.Generator | None
                         ) -> Tensor:
        """``g(z)`` at a latent fitted to the observed pixels: ``completion_steps`` of the
        inference sampler on the posterior given the observed entries of ``x``, from
        ``z ~ N(0, I)`` (the reference code's recovery; 0 steps: a generator sample)."""
        observed = 1.0 - _missing_mask(x, mask)
        z = self.infer(x * observed, self.latent(x.shape[0], rng), self.completion_steps, rng,
                       observed=observed)
        return self.decode(z).reshape(x.shape)


class VALS(AncestralLangevin):
    """Variational MCMC teaching: an encoder and the generator (decoder) form a VAE
    trained on the revised samples (Eq. 12); one parameter group ``"vae"``."""

    name = "vals"
    origin = "decoder samples"

    def __init__(self, energy: nn.Module, generator: Generator, encoder: GaussianEncoder,
                 sampler: Sampler, *, n_steps: int, kl_weight: float = 1.0,
                 **kwargs: Any) -> None:
        super().__init__(energy, generator, sampler, n_steps=n_steps, **kwargs)
        if getattr(encoder, "latent_dim", None) != generator.latent_dim:
            raise ValueError(f"the encoder's latent_dim ({getattr(encoder, 'latent_dim', None)}) "
                             f"must be the generator's ({generator.latent_dim})")
        if not kl_weight >= 0:
            raise ValueError(f"kl_weight must be >= 0, got {kl_weight!r}")
        self.encoder, self.kl_weight = encoder, float(kl_weight)

    def modules(self) -> dict[str, nn.Module]:
        return {"energy": self.energy, "generator": self.generator, "encoder": self.encoder}

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"energy": list(self.energy.parameters()),
                "vae": [*self.encoder.parameters(), *self.generator.parameters()]}

    def vae_loss(self, x: Tensor, rng: torch.Generator | None = None
                 ) -> tuple[Tensor, Tensor, Tensor]:
        """``(loss, reconstruction, KL)`` of Eq. (12) on ``x``: per-row reconstruction
        ``‖x − g(z)‖²/(2σ²)`` at ``z ~ π(z | x)`` and ``KL(π(z | x) ‖ N(0, I))``, and
        ``loss = mean(reconstruction + γ·KL)``."""
        z, mean, log_var = self.encoder.sample(x, rng)
        recon = self.reconstruction(x, z)
        kl = kl_standard_normal(mean, log_var)
        return (recon + self.kl_weight * kl).mean(), recon, kl

    def step(self, batch: Batch, rng: torch.Generator | None = None) -> StepOutput:
        _, x_tilde, loss_energy, metrics = self._energy_update(batch, rng)
        loss_vae, recon, kl = self.vae_loss(x_tilde, rng)
        metrics.update(recon=float(recon.detach().mean()), kl=float(kl.detach().mean()))
        return StepOutput(losses={"energy": loss_energy, "vae": loss_vae}, metrics=metrics,
                          negatives=x_tilde)

    def completion_start(self, x: Tensor, mask: Tensor, rng: torch.Generator | None
                         ) -> Tensor:
        """Encode the masked image (missing pixels set to 0, the data mean in standardised
        units), decode the posterior mean: ``g(μ_β(x ⊙ (1 − mask)))``."""
        observed = 1.0 - _missing_mask(x, mask)
        with torch.no_grad(), frozen(self.encoder):
            mean, _ = self.encoder(x * observed)
        return self.decode(mean).reshape(x.shape)


# -- options and registration ------------------------------------------------------------


@dataclass
class RevisionOptions(MethodOptions):
    """Options of every MCMC-teaching method (also the conditional ones)."""

    n_steps: int = option(20, low=1, help="K: revision steps of the negatives sampler from "
                          "the generator's samples (Eq. 5)")
    generator_sd: float = option(0.3, low=0.0, low_open=True,
                                 help="σ of the generator model N(g(z), σ²I), standardised "
                                 "units (reference code: 0.3)")
    energy_penalty: float = option(0.0, low=0.0, help="α in α·mean(U⁺² + U⁻²)")


@dataclass
class CoopOptions(RevisionOptions):
    n_chains: int | None = option(None, low=1, help="negatives per iteration; default batch")
    data_noise: float = option(0.0, low=0.0, help="σ of Gaussian noise added to the data "
                               "in the energy's update (standardised units; smooths "
                               "always-blank pixels)")


@dataclass
class CoopNetsOptions(CoopOptions):
    inference_steps: int = option(0, low=0, help="K_z: inference steps on the generator's "
                                  "posterior from ẑ (0: regress on ẑ, the reference default)")
    completion_steps: int = option(30, low=0, help="image completion: inference steps that "
                                   "fit the latent to the observed pixels")


@dataclass
class VALSOptions(CoopOptions):
    kl_weight: float = option(1.0, low=0.0, help="γ in Eq. (12), reconstruction/(2σ²) + "
                              "γ·KL (reference code: 2-3 with σ² = ½)")


def _common(opts: CoopOptions) -> dict[str, Any]:
    return {"n_steps": opts.n_steps, "generator_sd": opts.generator_sd,
            "n_chains": opts.n_chains, "energy_penalty": opts.energy_penalty,
            "data_noise": opts.data_noise}


def build_coopnets(ctx: BuildContext, opts: CoopNetsOptions) -> CoopNets:
    return CoopNets(ctx.energy, ctx.generator(), ctx.sampler("negatives"),
                    ctx.sampler("inference"), inference_steps=opts.inference_steps,
                    completion_steps=opts.completion_steps, **_common(opts))


def build_vals(ctx: BuildContext, opts: VALSOptions) -> VALS:
    generator = ctx.generator()
    return VALS(ctx.energy, generator, ctx.encoder(generator.latent_dim),
                ctx.sampler("negatives"), kl_weight=opts.kl_weight, **_common(opts))


REVISION = {"name": "langevin", "step_size": 0.005}
# The reference code's generator Langevin: z ← z − (δ²/2)(z + ∇) + δξ with δ = 0.1.
INFERENCE = {"name": "langevin", "step_size": 0.005}
register(MethodSpec("coopnets", CoopNetsOptions, build_coopnets,
                    roles={"negatives": REVISION, "inference": INFERENCE},
                    groups=("energy", "generator"), sections=("generator",),
                    help="CoopNets: energy + generator by MCMC teaching (alternating "
                    "back-propagation on ancestral Langevin samples)"))
register(MethodSpec("vals", VALSOptions, build_vals, roles={"negatives": REVISION},
                    groups=("energy", "vae"), sections=("generator", "encoder"),
                    help="VALS: energy + VAE by variational MCMC teaching (Eq. 12)"))
