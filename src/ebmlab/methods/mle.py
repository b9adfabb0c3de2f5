"""Maximum-likelihood learning with MCMC negatives (Anatomy paper; AniLA Alg. 1).

The gradient of KL(q ‖ p_θ) is estimated by (Anatomy, Eq. 2)

    ∇L(θ) ≈ ∇_θ [ mean U(x⁺) − mean U(x⁻) ],

``x⁺`` a data batch, ``x⁻`` the end of K sampler steps. Where the chains
start decides the learning regime:

* ``short_run``  — fresh noise every iteration (non-persistent, non-convergent
  short-run learning: the K-step sampler itself becomes the generator);
* ``persistent`` — a replay buffer of chains carried across iterations
  (convergent learning when chains mix);
* ``cd``         — chains start at the data batch (contrastive divergence CD-K).

Any sampler produces the negatives (Langevin, AniLA, MALA, HMC, underdamped).
Diagnostics per iteration: ``d_st = mean U(x⁺) − mean U(x⁻)`` and
``r_t = (ε²/2) · mean over steps of the batch-mean ‖∇U‖`` (with the step form
``x ← x − s∇U + …``, ε²/2 = s). Stabilisers: energy magnitude penalty
``α·mean(U(x⁺)² + U(x⁻)²)``, Gaussian noise on the data, and the Anatomy
"invariant tuning" (learning rate × ε²/2, so the update is invariant to the
Langevin step); gradient clipping and clamping live in the sampler. With a
Metropolis sampler (MALA, HMC), ``target_accept`` adapts its step between
iterations, ``log s ← log s + κ (mean acceptance − target)``: the learned energy
sharpens as training goes (thin structures reach curvatures ~1/σ² that no fixed
step survives), and the chains keep mixing at any sharpness while staying exact
for the model of the moment.

Registered as ``short_run``, ``persistent`` and ``cd``; one sampler role,
``negatives``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ebmlab.capabilities import has_block_gibbs
from ebmlab.chains import ChainSource, ReplayBuffer
from ebmlab.config import ConfigError, option
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
from ebmlab.samplers.base import Sampler
from ebmlab.samplers.gibbs import GibbsSweeps
from ebmlab.samplers.metropolis import _Metropolis

if TYPE_CHECKING:
    from ebmlab.experiment import BuildContext

REGIMES = ("short_run", "persistent", "cd")
GIBBS_SWEEPS = 1000  # model samples of an energy with exact block-Gibbs conditionals


def energy_target(energy: nn.Module, sampler: Sampler, init: ChainSource, n_steps: int,
                  origin: str = "noise") -> SamplingTarget:
    """How to sample an energy-only model: ``n_steps`` of its sampler from ``init``, or,
    when the energy has exact block-Gibbs conditionals (the RBM), 1000 Gibbs sweeps."""
    if has_block_gibbs(energy):
        return SamplingTarget(energy, GibbsSweeps(), init, GIBBS_SWEEPS, origin=origin)
    return SamplingTarget(energy, sampler, init, n_steps, origin=origin)


class MaximumLikelihood(Method):
    """ML with ``n_steps`` sampler steps per iteration from ``chains`` (or the data, for CD)."""

    def __init__(
        self,
        energy: nn.Module,
        sampler: Sampler,
        chains: ChainSource | None,
        *,
        regime: str,
        n_steps: int,
        n_chains: int | None = None,
        energy_penalty: float = 0.0,
        data_noise: float = 0.0,
        invariant_tuning: bool = False,
        noise: ChainSource | None = None,
        target_accept: float | None = None,
        adapt_rate: float = 0.05,
    ) -> None:
        if regime not in REGIMES:
            raise ValueError(f"regime must be one of {REGIMES}, got {regime!r}")
        if regime != "cd" and chains is None:
            raise ValueError(f"regime {regime!r} needs a chain source")
        if n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        self.name = regime
        self.energy, self.sampler, self.chains = energy, sampler, chains
        self.n_steps, self.n_chains = n_steps, n_chains
        self.energy_penalty, self.data_noise = energy_penalty, data_noise
        self.invariant_tuning = invariant_tuning
        self.noise = noise if noise is not None else (chains if regime == "short_run" else None)
        if target_accept is not None and not 0 < target_accept < 1:
            raise ValueError(f"target_accept must be in (0, 1), got {target_accept}")
        # Only a Metropolis sampler reports an acceptance to adapt to; others keep their step.
        self.adapted = sampler if isinstance(sampler, _Metropolis) and target_accept is not None \
            else None
        self.target_accept = target_accept if self.adapted is not None else None
        self.adapt_rate = adapt_rate

    def modules(self) -> dict[str, nn.Module]:
        return {"energy": self.energy}

    def target(self) -> SamplingTarget | None:
        """Short-run chains from noise: ``n_steps`` sampler steps (the method's own
        generative process in the non-convergent regime)."""
        if self.noise is None:
            return None
        return energy_target(self.energy, self.sampler, self.noise, self.n_steps)

    def lr_scale(self, group: str) -> float:
        step = getattr(self.sampler, "step_size", None)
        return float(step) if self.invariant_tuning and step is not None else 1.0

    def initial_chains(self, x_pos: Tensor, rng: torch.Generator | None) -> Tensor:
        if self.name == "cd":
            return x_pos.detach()
        assert self.chains is not None
        n = self.n_chains or x_pos.shape[0]
        return self.chains.sample(n, generator=rng).to(x_pos.device, x_pos.dtype)

    def step(self, batch: Batch, rng: torch.Generator | None = None) -> StepOutput:
        x_pos = batch_x(batch)
        if self.data_noise > 0:
            x_pos = x_pos + self.data_noise * torch.randn(
                x_pos.shape, generator=rng, dtype=x_pos.dtype, device=x_pos.device)
        x0 = self.initial_chains(x_pos, rng)
        x_neg, chain_metrics = sample_with_diagnostics(self.sampler, self.energy, x0,
                                                       self.n_steps, rng)
        if self.chains is not None and self.name != "cd":
            self.chains.update(x_neg)
        loss, metrics = contrastive_loss(self.energy, x_pos, x_neg,
                                         energy_penalty=self.energy_penalty)
        metrics.update(chain_metrics)
        if "accept" in metrics:
            if self.adapted is not None and self.target_accept is not None:
                self.adapted.step_size *= math.exp(
                    self.adapt_rate * (metrics["accept"] - self.target_accept))
                metrics["step_size"] = self.adapted.step_size
        return StepOutput(losses={"energy": loss}, metrics=metrics, negatives=x_neg)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {} if self.chains is None else {
            f"chains.{k}": v for k, v in self.chains.state_dict().items()}
        if self.adapted is not None:
            state["step_size"] = self.adapted.step_size
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state)
        if "step_size" in state:  # the adapted step (a fixed step comes from the config)
            step_size = float(state.pop("step_size"))
            if self.adapted is not None:
                self.adapted.step_size = step_size
        if self.chains is not None:
            self.chains.load_state_dict({k[7:]: v for k, v in state.items()
                                         if k.startswith("chains.")})
        elif state:
            raise ValueError(f"unexpected method state {sorted(state)}")


# -- options and registration ------------------------------------------------------------


@dataclass
class MLOptions(MethodOptions):
    n_steps: int = option(20, low=1, help="sampler steps per iteration (K)")
    n_chains: int | None = option(None, low=1, help="negatives per iteration; default batch")
    init: str = option("uniform", choices=["uniform", "gaussian"],
                       help="noise the chains start from (standardised units)")
    init_scale: float = option(2.5, low=0.0, low_open=True,
                               help="uniform: half-width of the box; gaussian: sd")
    energy_penalty: float = option(0.0, low=0.0, help="α in α·mean(U⁺² + U⁻²)")
    data_noise: float = option(0.0, low=0.0, help="sd of noise added to data batches")
    invariant_tuning: bool = option(False, help="learning rate × ε²/2 (Anatomy)")
    target_accept: float | None = option(0.6, low=0.0, high=1.0, low_open=True,
                                         help="mala / hmc: adapt the step between iterations "
                                         "towards this mean acceptance (none: fixed step); "
                                         "samplers without acceptance keep their step")


@dataclass
class CDOptions(MLOptions):
    n_steps: int = option(10, low=1, help="sampler steps per iteration (K), from the data")


@dataclass
class PersistentOptions(MLOptions):
    buffer_size: int = option(500, low=1, help="replay buffer capacity")
    reinit_prob: float = option(0.05, low=0.0, high=1.0, help="restart rate per use")


def build_ml(ctx: BuildContext, opts: MLOptions) -> MaximumLikelihood:
    noise = ctx.noise(opts.init, opts.init_scale)
    chains: ChainSource | None = None
    if opts.name == "short_run":
        chains = noise
    elif isinstance(opts, PersistentOptions):
        if (opts.n_chains or ctx.cfg.train.batch_size) > opts.buffer_size:
            raise ConfigError("method.buffer_size must be >= the number of chains per iteration")
        chains = ReplayBuffer(noise, capacity=opts.buffer_size, reinit_prob=opts.reinit_prob)
    return MaximumLikelihood(
        ctx.energy, ctx.sampler("negatives"), chains, regime=opts.name, n_steps=opts.n_steps,
        n_chains=opts.n_chains, energy_penalty=opts.energy_penalty, data_noise=opts.data_noise,
        invariant_tuning=opts.invariant_tuning, noise=noise, target_accept=opts.target_accept)


NEGATIVES = {"negatives": {"name": "langevin", "step_size": 0.005}}
# CD's default sampler is MALA with its step adapted to acceptance 0.6 (target_accept): on
# thin structures (curves of components with sd ≈ 0.05 in standardised units) the learned
# energy's curvature outgrows any fixed Langevin step (s·L > 2 diverges), while adapted MALA
# stays exact and mixing; chains from the data keep the weights of separated parts right.
CD_NEGATIVES = {"negatives": {"name": "mala", "step_size": 0.005}}
register(MethodSpec("persistent", PersistentOptions, build_ml, roles=NEGATIVES,
                    help="maximum likelihood, chains persist in a replay buffer (convergent)"))
register(MethodSpec("short_run", MLOptions, build_ml, roles=NEGATIVES,
                    help="maximum likelihood, K steps from fresh noise (non-convergent)"))
register(MethodSpec("cd", CDOptions, build_ml, roles=CD_NEGATIVES,
                    help="contrastive divergence CD-K, chains start at the data batch"))
