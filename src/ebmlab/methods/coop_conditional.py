"""Conditional MCMC teaching for image completion: cCoopNets and conditional VALS.

The VALS paper (Xie, Zheng & Li, ``shared/papers``, Sec. "Conditional image generation",
Table 1) compares cCoopNets with a conditional VALS on image inpainting: the energy, the
generator and the VAE of :mod:`ebmlab.methods.coop` all take the condition as an extra
input. Here the condition of an image ``x`` is a random mask ``m`` (1 = missing) and the
masked image ``c = x ⊙ (1 − m)`` (missing pixels 0, the data mean in standardised units):

* the energy ``U(x | c, m) = f([x, c, m]) + ‖x‖²/(2σ_ref²)``
  (:class:`~ebmlab.energies.conditional.ConditionalEnergy`; ``[model]`` network on the
  stacked channels / features);
* the generator ``g(z, c, m)`` (``[generator]``: ``mlp``,
  :class:`~ebmlab.generators.conditional.ConditionalMLPGenerator`, or ``conv``, the U-Net
  :class:`~ebmlab.generators.conditional.ConditionalConvGenerator`); cVALS' encoder
  ``π_β(z | x, c, m)`` is the ``[encoder]`` network on ``[x, c, m]``.

Every iteration draws a mask per data image (kinds ``method.masks``, uniformly; the
built-in masks of :func:`ebmlab.inpaint.named_mask`, fresh pixels for ``random:P`` at
every iteration, and ``all``: nothing observed), forms the pairs ``(c, x)`` (after adding
``N(0, data_noise²)`` to the images when ``method.data_noise > 0``), and runs the MCMC
teaching of :mod:`ebmlab.methods.coop` given the condition:

1. ``ẑ ~ N(0, I)``, ``x̂ = x_o ⊕ g(ẑ, c, m)_m`` (observed pixels the image's own);
2. **revision**: K steps of the ``negatives`` sampler on ``U(· | c, m)`` over the
   **missing pixels only** (:func:`~ebmlab.samplers.masked.sample_masked`; the observed
   pixels stay the image's, bit for bit) give ``x̃`` (conditional Eq. 4–5);
3. the energy's ML step with ``x̃`` as negatives, ``∇_θ [mean U(x | c, m) − mean U(x̃ | c,
   m)]`` (Eq. 6): a step on the conditional ``p(x_m | c, m) ∝ exp(−U(x_o ⊕ x_m | c, m))``;
4. the generator learns ``x̃`` on the missing pixels, ``m ⊙ ‖x̃ − g(z, c, m)‖² / (2σ²)``:

   * :class:`ConditionalCoopNets` (``ccoopnets``): at ``z̃`` = ``K_z`` inference steps on
     ``log N(z; 0, I) + log N(x̃_m; g(z, c, m)_m, σ²I)`` from ``ẑ`` (``K_z = 0``: ``ẑ``),
     Eq. 9;
   * :class:`ConditionalVALS` (``cvals``): the conditional VAE (Eq. 12 given ``c``),
     ``mean [m ⊙ ‖x̃ − g(z, c, m)‖²/(2σ²) + γ KL(π_β(z | x̃, c, m) ‖ N(0, I))]``,
     ``z ~ π_β`` reparametrised.

**Completion** (:meth:`ConditionalAncestralLangevin.complete`, ``ebmlab inpaint``):
the start is ``g(z, c, m)``, ``z ~ N(0, I)`` (for cVALS the decoder at a draw of the
prior, the cVAE's generative model: the encoder needs the whole image), then the
revision sampler on ``U(· | c, m)`` over the missing pixels only.

**Model samples** (``ebmlab sample --run``, ``load_run(path).sample(n)``, the long-run
check, FID): the conditional with nothing observed, ``c = 0``, ``m = 1``:
``U(x) := U(x | 0, 1)`` is the model's energy of whole images (:meth:`energy_model`) and
samples are ``g(z, 0, 1)`` revised by K steps on it. They are trained only when ``all``
is one of ``method.masks`` (the default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ebmlab.config import option
from ebmlab.energies.conditional import ConditionalEnergy, Conditioned, stack_condition
from ebmlab.generators.conditional import BoundGenerator, ConditionalGenerator
from ebmlab.generators.encoder import GaussianEncoder, kl_standard_normal
from ebmlab.inpaint import is_mask_name, named_mask
from ebmlab.methods.base import Batch, StepOutput, contrastive_loss
from ebmlab.methods.coop import (
    INFERENCE,
    REVISION,
    VALS,
    AncestralLangevin,
    CoopNets,
    RevisionOptions,
)
from ebmlab.methods.registry import MethodSpec, register
from ebmlab.samplers.base import Sampler, frozen
from ebmlab.samplers.masked import as_mask, sample_masked

if TYPE_CHECKING:
    from ebmlab.experiment import BuildContext

ALL = "all"  # nothing observed
IMAGE_MASKS = ("center", "bottom_half", "random:0.5", ALL)
VECTOR_MASKS = ("random:0.5", ALL)


def default_masks(shape: tuple[int, ...]) -> tuple[str, ...]:
    """Mask kinds by default: images center, bottom_half, random:0.5, all; vectors
    random:0.5, all."""
    return IMAGE_MASKS if len(shape) == 3 else VECTOR_MASKS


def check_mask_kinds(kinds: list[str] | tuple[str, ...], shape: tuple[int, ...]
                     ) -> tuple[str, ...]:
    """The kinds, checked against the data's event shape (one-line ``ValueError``)."""
    if not kinds:
        raise ValueError("masks must name at least one mask kind")
    for kind in kinds:
        if kind == ALL:
            continue
        if not isinstance(kind, str) or not is_mask_name(kind):
            raise ValueError(f"masks: {kind!r} is not a mask kind (center, bottom_half, "
                             f"random:P, {ALL})")
        named_mask(kind, shape, 1, image=len(shape) == 3)
    return tuple(kinds)


def draw_masks(kinds: tuple[str, ...], shape: tuple[int, ...], n: int,
               rng: torch.Generator | None, device: torch.device | str = "cpu") -> Tensor:
    """``n`` masks ``(n, *shape)`` (bool, True = missing): a kind per image drawn uniformly
    from ``kinds``, each made by :func:`ebmlab.inpaint.named_mask` with a seed drawn from
    ``rng`` (new random pixels every call); ``all`` hides every pixel."""
    gen_device = rng.device if rng is not None else torch.device("cpu")
    which = torch.randint(len(kinds), (n,), generator=rng, device=gen_device).cpu()
    seed = int(torch.randint(2**62, (1,), generator=rng, device=gen_device))
    out = torch.zeros(n, *shape, dtype=torch.bool)
    for i, kind in enumerate(kinds):
        rows = torch.nonzero(which == i)[:, 0]
        if rows.numel() == 0:
            continue
        if kind == ALL:
            out[rows] = True
        else:
            out[rows] = named_mask(kind, shape, rows.numel(), seed=seed + i,
                                   image=len(shape) == 3)
    return out.to(device)


def masked_pairs(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """The condition of images ``x``: ``(c, m)`` with ``m`` the mask in ``x``'s dtype (1 =
    missing) and ``c = x ⊙ (1 − m)`` (missing pixels 0)."""
    m = as_mask(mask, x).to(x.dtype)
    return torch.where(m.bool(), torch.zeros_like(x), x), m


class ConditionalAncestralLangevin(AncestralLangevin):
    """Shared part of cCoopNets and cVALS: masked pairs, the conditional revision and
    energy update, completion; model samples given nothing observed."""

    energy: ConditionalEnergy
    generator: ConditionalGenerator
    masks: tuple[str, ...]

    def _set_masks(self, masks: list[str] | None) -> None:
        shape = self.generator.output_shape
        self.masks = check_mask_kinds(default_masks(shape) if masks is None else masks, shape)

    def generate(self, z: Tensor, c: Tensor, m: Tensor) -> Tensor:
        """``x_o ⊕ g(z, c, m)_m``: the generator's completion, observed pixels ``c``'s; no
        graph."""
        with torch.no_grad():
            return torch.where(m.bool(), self.generator(z, c, m), c)

    def _conditional_update(self, batch: Batch, rng: torch.Generator | None
                            ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, dict[str, float]]:
        """``(ẑ, c, m, x̃, energy loss, metrics)``: masked pairs of the batch, the revision of
        ``g(ẑ, c, m)`` over the missing pixels and Eq. (6) given the condition."""
        x_pos = self.noisy_data(batch, rng)
        mask = draw_masks(self.masks, tuple(x_pos.shape[1:]), x_pos.shape[0], rng,
                          x_pos.device)
        c, m = masked_pairs(x_pos, mask)
        z_hat = self.latent(x_pos.shape[0], rng)
        x_hat = self.generate(z_hat, c, m)
        bound = Conditioned(self.energy, c, m)
        x_tilde, revision = self.revise(x_hat, rng, energy=bound, mask=mask)
        loss, metrics = contrastive_loss(bound, x_pos, x_tilde,
                                         energy_penalty=self.energy_penalty)
        metrics.update(revision)
        metrics["missing"] = float(m.mean())
        return z_hat, c, m, x_tilde, loss, metrics

    def missing_reconstruction(self, x: Tensor, z: Tensor, c: Tensor, m: Tensor) -> Tensor:
        """``Σ m ⊙ (x − g(z, c, m))² / (2σ²)`` per row (``−log N(x_m; g_m, σ²I)`` up to a
        constant); keeps the generator's graph."""
        return ((m * (x - self.generator(z, c, m))).reshape(x.shape[0], -1).square().sum(1)
                / (2 * self.generator_sd**2))

    def completion_start(self, x: Tensor, mask: Tensor, rng: torch.Generator | None
                         ) -> Tensor:
        """``x_o ⊕ g(z, c, m)_m``, ``z ~ N(0, I)``, ``(c, m)`` the condition of ``x`` and
        ``mask`` (1 = missing)."""
        c, m = masked_pairs(x, mask)
        with frozen(self.generator):
            return self.generate(self.latent(x.shape[0], rng), c, m)

    def complete(self, x: Tensor, mask: Tensor, *, n_steps: int | None = None,
                 rng: torch.Generator | None = None) -> Tensor:
        """Images ``x`` with the pixels where ``mask == 1`` drawn from the conditional model
        ``p(x_m | c, m) ∝ exp(−U(x_o ⊕ x_m | c, m))``: ``n_steps`` (default K) of the
        revision sampler on the missing pixels only, from :meth:`completion_start`; the
        observed pixels are ``x``'s, bit for bit. Detached."""
        from ebmlab.samplers.svgd import SVGD

        if isinstance(self.sampler, SVGD):
            raise ValueError("the conditional methods cannot complete images with SVGD (its "
                             "particles interact across conditions); use another sampler")
        mask = as_mask(mask, x)
        start = self.completion_start(x, mask, rng)
        c, m = masked_pairs(x, mask)
        steps = self.n_steps if n_steps is None else n_steps
        return sample_masked(self.sampler, Conditioned(self.energy, c, m), x, mask, steps,
                             x0=start, generator=rng).detach()


class ConditionalCoopNets(ConditionalAncestralLangevin, CoopNets):
    """cCoopNets: the generator ``g(z, c, m)`` learns the revised completions by alternating
    back-propagation on the missing pixels (``K_z`` inference steps from ``ẑ``, then a
    regression step)."""

    name = "ccoopnets"

    def __init__(self, energy: ConditionalEnergy, generator: ConditionalGenerator,
                 sampler: Sampler, inference: Sampler, *, n_steps: int,
                 masks: list[str] | None = None, data_noise: float = 0.0,
                 inference_steps: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(energy, generator, sampler, inference, n_steps=n_steps,
                         inference_steps=inference_steps, data_noise=data_noise, **kwargs)
        self._set_masks(masks)

    def step(self, batch: Batch, rng: torch.Generator | None = None) -> StepOutput:
        z_hat, c, m, x_tilde, loss_energy, metrics = self._conditional_update(batch, rng)
        z_tilde = self.infer(x_tilde, z_hat, self.inference_steps, rng, observed=m,
                             generator=BoundGenerator(self.generator, c, m))
        if self.inference_steps:
            metrics["inference_shift"] = float((z_tilde - z_hat).norm(dim=1).mean())
        loss_generator = self.missing_reconstruction(x_tilde, z_tilde, c, m).mean()
        return StepOutput(losses={"energy": loss_energy, "generator": loss_generator},
                          metrics=metrics, negatives=x_tilde)


class ConditionalVALS(ConditionalAncestralLangevin, VALS):
    """Conditional VALS: an encoder ``π_β(z | x, c, m)`` and the decoder ``g(z, c, m)`` form
    a conditional VAE trained on the revised completions (Eq. 12 given the condition)."""

    name = "cvals"

    def __init__(self, energy: ConditionalEnergy, generator: ConditionalGenerator,
                 encoder: GaussianEncoder, sampler: Sampler, *, n_steps: int,
                 masks: list[str] | None = None, data_noise: float = 0.0,
                 kl_weight: float = 1.0,
                 **kwargs: Any) -> None:
        super().__init__(energy, generator, encoder, sampler, n_steps=n_steps,
                         kl_weight=kl_weight, data_noise=data_noise, **kwargs)
        self._set_masks(masks)

    def cvae_loss(self, x: Tensor, c: Tensor, m: Tensor, rng: torch.Generator | None = None
                  ) -> tuple[Tensor, Tensor, Tensor]:
        """``(loss, reconstruction, KL)``: per row ``m ⊙ ‖x − g(z, c, m)‖²/(2σ²)`` at ``z ~
        π_β(z | x, c, m)`` and ``KL(π_β(z | x, c, m) ‖ N(0, I))``; ``loss = mean(recon +
        γ·KL)``."""
        z, mean, log_var = self.encoder.sample(stack_condition(x, c, m), rng)
        recon = self.missing_reconstruction(x, z, c, m)
        kl = kl_standard_normal(mean, log_var)
        return (recon + self.kl_weight * kl).mean(), recon, kl

    def step(self, batch: Batch, rng: torch.Generator | None = None) -> StepOutput:
        _, c, m, x_tilde, loss_energy, metrics = self._conditional_update(batch, rng)
        loss_vae, recon, kl = self.cvae_loss(x_tilde, c, m, rng)
        metrics.update(recon=float(recon.detach().mean()), kl=float(kl.detach().mean()))
        return StepOutput(losses={"energy": loss_energy, "vae": loss_vae}, metrics=metrics,
                          negatives=x_tilde)


# -- options and registration ------------------------------------------------------------

MASKS_HELP = ("mask kinds of the training pairs, one drawn per image and iteration: center, "
              "bottom_half, random:P (as `ebmlab inpaint --mask`), all (nothing observed: "
              "trains the model samples); none: images center, bottom_half, random:0.5, all; "
              "vectors random:0.5, all")


@dataclass
class ConditionalOptions(RevisionOptions):
    masks: list[str] | None = option(None, help=MASKS_HELP)
    data_noise: float = option(0.0, low=0.0, help="sd of noise added to the data images "
                               "before the pairs are made (standardised units; smooths "
                               "always-blank pixels)")


@dataclass
class ConditionalCoopNetsOptions(ConditionalOptions):
    inference_steps: int = option(0, low=0, help="K_z: inference steps on the generator's "
                                  "posterior given the missing pixels, from ẑ (0: regress on ẑ)")


@dataclass
class ConditionalVALSOptions(ConditionalOptions):
    kl_weight: float = option(1.0, low=0.0, help="γ in Eq. (12), reconstruction/(2σ²) + "
                              "γ·KL (reference code: 2-3 with σ² = ½)")


def _common(opts: ConditionalOptions) -> dict[str, Any]:
    return {"n_steps": opts.n_steps, "generator_sd": opts.generator_sd,
            "energy_penalty": opts.energy_penalty, "masks": opts.masks,
            "data_noise": opts.data_noise}


def build_ccoopnets(ctx: BuildContext, opts: ConditionalCoopNetsOptions) -> ConditionalCoopNets:
    return ConditionalCoopNets(ctx.conditional_energy(), ctx.conditional_generator(),
                               ctx.sampler("negatives"), ctx.sampler("inference"),
                               inference_steps=opts.inference_steps,
                               **_common(opts))


def build_cvals(ctx: BuildContext, opts: ConditionalVALSOptions) -> ConditionalVALS:
    generator = ctx.conditional_generator()
    return ConditionalVALS(ctx.conditional_energy(), generator,
                           ctx.encoder(generator.latent_dim, stacked=3),
                           ctx.sampler("negatives"), kl_weight=opts.kl_weight, **_common(opts))


register(MethodSpec("ccoopnets", ConditionalCoopNetsOptions, build_ccoopnets,
                    roles={"negatives": REVISION, "inference": INFERENCE},
                    groups=("energy", "generator"), sections=("generator",),
                    help="cCoopNets: conditional energy + generator by MCMC teaching on "
                    "masked pairs, for image completion"))
register(MethodSpec("cvals", ConditionalVALSOptions, build_cvals,
                    roles={"negatives": REVISION}, groups=("energy", "vae"),
                    sections=("generator", "encoder"),
                    help="conditional VALS: conditional energy + conditional VAE by "
                    "variational MCMC teaching on masked pairs, for image completion"))

__all__ = ["ConditionalAncestralLangevin", "ConditionalCoopNets", "ConditionalVALS",
           "check_mask_kinds", "draw_masks", "masked_pairs"]
