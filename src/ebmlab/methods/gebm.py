"""Generalized energy-based models trained with KALE (Arbel, Zhou & Gretton, "Generalized
Energy Based Models", the ``generalized-ebm-kale`` paper in ``shared/papers``).

**Model.** A base ``G_θ``: latents ``z ~ η = N(0, I)`` pushed forward, ``x = G_θ(z)``; and
an energy ``E`` that reweights the base on its own support:

    dQ(x) = exp(−E(x)) dG_θ(x) / Z,     Z = E_{z~η}[exp(−E(G_θ(z)))].

**Energy (KALE lower bound).** ``E`` and a learned scalar ``c`` (the log-partition, in the
energy's parameter group) maximise

    F(E, c) = −E_P[E + c] − E_{G_θ}[exp(−(E + c))] + 1,

a lower bound on ``−E_P[E] − log Z`` (since ``e^{−u} ≥ 1 − u``), tight at ``c = log Z``
(where ``F = −E_P[E] − log Z``); its maximum over ``E`` is ``KL(P ‖ G_θ)`` when ``P ≪ G_θ``.
The energy's loss is ``−F`` plus an optional gradient penalty ``λ·mean ‖∇ₓE(x̂)‖²`` at
random interpolates ``x̂`` of data and base samples (the reference code's default, λ = 1).
``c`` starts at a Monte Carlo ``log mean exp(−E(G(zᵢ)))`` over ``init_samples`` latents.

**Base.** ``G_θ`` minimises ``KALE(P ‖ G_θ) = max_{E,c} F``; for the current ``E`` at
``c = log Z`` its θ-gradient is (the paper's theorem)

    ∇_θ K = Z⁻¹ ∫ ∇ₓE(G_θ(z)) ∇_θG_θ(z) exp(−E(G_θ(z))) η(z) dz
          ≈ Σᵢ wᵢ ∇ₓE(G(zᵢ)) ∇_θG(zᵢ),   w = softmax(−E(G(z₁)), …, −E(G(z_N))),

self-normalised importance weights. The base's loss is

    L_base = −mean E(xⱼ) − (logsumexp_i(−E(G(zᵢ))) − log N),

the batch estimate of KALE at ``c = log Ẑ``: its θ-gradient is exactly the weighted sum
above (the data term does not depend on θ; ``∇_θ logsumexp(−Eᵢ) = −Σ wᵢ ∇_θEᵢ``). This is
the reference code's generator loss, ``−(mean E(x) + logsumexp(−E(G(z))) − log N)``, the
same expression. It is back-propagated to the base only (the trainer's update contract),
so it shares its graph with the energy's loss.

**Schedule** (the reference code's). Training alternates blocks of ``energy_steps``
iterations (5); the base steps in the last iteration of each block, on the same batch and
graph as that iteration's energy step (both gradients taken at the same parameters), so a
block holds ``energy_steps`` energy steps per base step. The first block, and the block of
every ``warmup_every``-th base step (500), lasts ``warmup_energy_steps`` (100). An
iteration without a base step leaves the base and its optimiser untouched.

**Sampling** (the paper's latent MCMC). The posterior on latents
``ν(z) ∝ η(z) exp(−E(G_θ(z))/T)`` (``T = temperature``, 1 for the model itself) has energy

    U_ν(z) = ½‖z‖² + E(G_θ(z)) / T,

sampled by the ``latent`` sampler (any of the registry: langevin/ULA, mala, hmc,
underdamped, imh) from ``z ~ η`` for ``sample_steps`` steps, then decoded by ``G_θ``.
``sample_steps = 0`` gives the base alone; ``imh`` with its default proposal ``N(0, I) = η``
is the independent Metropolis–Hastings baseline.

**Density.** With a flow base (``generator.name = "flow"``) the GEBM has a density
``log q(x) = log g_θ(x) − E(x) − log Z``, so :meth:`GEBM.energy_model` is
``U(x) = E(x) − log g_θ(x)``: 2-D quadrature, exact KL and NLL apply unchanged; in more
dimensions ``log Z`` is estimated by importance sampling from the base
(:meth:`GEBMDensity.log_partition_is`, with its standard error).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ebmlab.chains import NoiseInit
from ebmlab.config import option
from ebmlab.generators import Generator
from ebmlab.methods.base import Batch, Method, SamplingTarget, StepOutput, batch_x
from ebmlab.methods.registry import MethodOptions, MethodSpec, register
from ebmlab.samplers.base import Sampler, frozen

if TYPE_CHECKING:
    from ebmlab.experiment import BuildContext

CHUNK = 4096  # latents per forward pass when estimating log Z


class FlooredEnergy(nn.Module):
    """``max(E(x), floor)``: the energy clamped from below (the reference code's
    ``relu(E + m) − m``), so ``exp(−E) ≤ exp(−floor)`` and no single base sample can take
    all the importance weight."""

    def __init__(self, energy: nn.Module, floor: float) -> None:
        super().__init__()
        self.energy, self.floor = energy, float(floor)

    def forward(self, x: Tensor) -> Tensor:
        return self.energy(x).clamp_min(self.floor)

    def extra_repr(self) -> str:
        return f"floor={self.floor:g}"


class LogPartition(nn.Module):
    """The learned scalar ``c`` of the KALE bound (an estimate of ``log Z``)."""

    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.zeros(()))


class LatentEnergy(nn.Module):
    """``U_ν(z) = ½‖z‖² + E(G(z))/T``: the latent posterior ``η(z) exp(−E(G(z))/T)``."""

    def __init__(self, energy: nn.Module, base: Generator, temperature: float = 1.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.energy, self.base, self.temperature = energy, base, float(temperature)

    def forward(self, z: Tensor) -> Tensor:
        prior = 0.5 * z.reshape(z.shape[0], -1).square().sum(dim=1)
        return prior + self.energy(self.base(z)) / self.temperature


def log_mean_exp_with_se(a: Tensor) -> tuple[float, float]:
    """``log mean exp(aᵢ)`` and its delta-method standard error
    ``sd(exp(a)) / (√n · mean exp(a))``, computed stably (float64)."""
    a = a.detach().double().reshape(-1)
    n = a.numel()
    m = a.max()
    w = torch.exp(a - m)
    mean = w.mean()
    sd = w.std() if n > 1 else torch.zeros((), dtype=torch.float64)
    return float(m + mean.log()), float(sd / (math.sqrt(n) * mean))


class GEBMDensity(nn.Module):
    """``U(x) = E(x) − log g(x)`` for a base with a density (a flow): the GEBM's density is
    ``exp(−U)/Z`` with ``Z = E_{x~g}[exp(−E(x))]``."""

    def __init__(self, energy: nn.Module, base: Any) -> None:  # a Generator with log_prob(x)
        super().__init__()
        self.energy, self.base = energy, base

    def forward(self, x: Tensor) -> Tensor:
        return self.energy(x) - self.base.log_prob(x)

    @torch.no_grad()
    def log_partition_is(self, n: int, generator: torch.Generator | None = None
                         ) -> tuple[float, float]:
        """``log Z`` by importance sampling from the base, ``log mean exp(−E(xᵢ))``,
        ``xᵢ ~ g``, and its standard error (delta method; biased low by about se²/2)."""
        with frozen(self.energy, self.base):
            neg = []
            for start in range(0, n, CHUNK):
                z = self.base.sample_latent(min(CHUNK, n - start), generator)
                neg.append(-self.energy(self.base(z)))
        return log_mean_exp_with_se(torch.cat(neg))


class GEBM(Method):
    """A base generator reweighted by an energy, trained with KALE, sampled in latent space."""

    name = "gebm"
    d_st_settles = False  # the base's samples are amortized negatives: d_st stays one-sided

    def __init__(
        self,
        energy: nn.Module,
        base: Generator,
        sampler: Sampler,
        *,
        energy_steps: int = 5,
        warmup_energy_steps: int = 100,
        warmup_every: int = 500,
        penalty: float = 1.0,
        temperature: float = 1.0,
        sample_steps: int = 100,
        n_samples: int | None = None,
        init_samples: int = 10000,
    ) -> None:
        for key, value, low in (("energy_steps", energy_steps, 1),
                                ("warmup_energy_steps", warmup_energy_steps, 1),
                                ("warmup_every", warmup_every, 0),
                                ("sample_steps", sample_steps, 0),
                                ("init_samples", init_samples, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{key} must be an integer >= {low}, got {value!r}")
        if not penalty >= 0:
            raise ValueError(f"penalty must be >= 0, got {penalty!r}")
        if n_samples is not None and n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples!r}")
        self.energy, self.base, self.sampler = energy, base, sampler
        self.log_partition = LogPartition()
        p = next(base.parameters())
        self.log_partition.to(device=p.device, dtype=p.dtype)
        self.energy_steps, self.warmup_energy_steps = energy_steps, warmup_energy_steps
        self.warmup_every, self.penalty = warmup_every, float(penalty)
        self.sample_steps, self.n_samples, self.init_samples = sample_steps, n_samples, init_samples
        self.latent_energy = LatentEnergy(energy, base, temperature)
        self.latent_init = NoiseInit(base.latent_dim, kind="gaussian", scale=1.0, dtype=p.dtype,
                                     device=p.device)
        self.density = GEBMDensity(energy, base) if hasattr(base, "log_prob") else None
        # schedule state (saved in checkpoints)
        self.calls = 0  # iterations taken
        self.base_steps = 0  # base steps taken
        self.block_left = 0  # iterations left in the current block (0: a new block starts)
        self.c_ready = False  # c initialised by Monte Carlo

    @property
    def c(self) -> nn.Parameter:
        return self.log_partition.c

    def modules(self) -> dict[str, nn.Module]:
        return {"energy": self.energy, "base": self.base, "log_partition": self.log_partition}

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"energy": [*self.energy.parameters(), self.c],
                "base": list(self.base.parameters())}

    def energy_model(self) -> nn.Module | None:
        """``U(x) = E(x) − log g_θ(x)`` with a flow base; ``None`` otherwise (a base with
        a lower-dimensional latent has no density)."""
        return self.density

    def target(self) -> SamplingTarget:
        """Latent chains from ``z ~ η``: ``sample_steps`` of the latent sampler on
        ``½‖z‖² + E(G(z))/T``, decoded by the base."""
        return SamplingTarget(self.latent_energy, self.sampler, self.latent_init,
                              self.sample_steps, decode=self.base,
                              origin="z ~ N(0, I) in latent space")

    # -- training -------------------------------------------------------------------------
    def base_samples(self, n: int, rng: torch.Generator | None) -> Tensor:
        z = self.base.sample_latent(n, rng)
        return self.base(z)

    @torch.no_grad()
    def estimate_log_partition(self, n: int, rng: torch.Generator | None) -> float:
        """``log mean exp(−E(G(zᵢ)))`` over ``n`` latents (modules in eval mode)."""
        with frozen(self.energy, self.base):
            neg = [-self.energy(self.base_samples(min(CHUNK, n - s), rng))
                   for s in range(0, n, CHUNK)]
        return log_mean_exp_with_se(torch.cat(neg))[0]

    def _schedule(self) -> bool:
        """Advance the block schedule; ``True`` when this iteration also steps the base."""
        if self.block_left == 0:
            k = self.base_steps
            warm = k == 0 or (self.warmup_every > 0 and k % self.warmup_every == 0)
            self.block_left = self.warmup_energy_steps if warm else self.energy_steps
        self.block_left -= 1
        self.calls += 1
        if self.block_left == 0:
            self.base_steps += 1
            return True
        return False

    def gradient_penalty(self, x: Tensor, x_gen: Tensor, rng: torch.Generator | None
                         ) -> Tensor:
        """``mean ‖∇ₓE(x̂)‖²`` at ``x̂ = αx + (1 − α)x_gen``, α ~ U(0, 1) per row."""
        m = min(x.shape[0], x_gen.shape[0])
        alpha = torch.rand((m,) + (1,) * (x.dim() - 1), generator=rng, dtype=x.dtype,
                           device=x.device)
        x_hat = (alpha * x[:m] + (1 - alpha) * x_gen[:m].detach()).requires_grad_(True)
        (g,) = torch.autograd.grad(self.energy(x_hat).sum(), x_hat, create_graph=True)
        return g.reshape(m, -1).square().sum(dim=1).mean()

    def step(self, batch: Batch, rng: torch.Generator | None = None) -> StepOutput:
        x = batch_x(batch)
        if not self.c_ready:
            with torch.no_grad():
                self.c.fill_(self.estimate_log_partition(self.init_samples, rng))
            self.c_ready = True
        base_step = self._schedule()
        n = self.n_samples or x.shape[0]
        with torch.set_grad_enabled(base_step):
            x_gen = self.base_samples(n, rng).reshape(n, *x.shape[1:])
        e_pos, e_neg = self.energy(x), self.energy(x_gen)
        c = self.c
        kale = -(e_pos.mean() + c) - torch.exp(-(e_neg + c)).mean() + 1
        loss_energy = -kale
        metrics: dict[str, float] = {}
        if self.penalty > 0:
            gp = self.gradient_penalty(x, x_gen, rng)
            loss_energy = loss_energy + self.penalty * gp
            metrics["grad_penalty"] = float(gp.detach())
        losses = {"energy": loss_energy}
        log_z_batch = torch.logsumexp(-e_neg, dim=0) - math.log(n)
        if base_step:
            losses["base"] = -e_pos.mean() - log_z_batch
        with torch.no_grad():
            w = torch.softmax(-e_neg.detach(), dim=0)
            d_st = float(e_pos.mean() - e_neg.mean())
        metrics.update(kale=float(kale.detach()), c=float(c.detach()),
                       log_z_batch=float(log_z_batch.detach()),
                       ess=float(1.0 / (n * w.square().sum())), d_st=d_st,
                       energy_pos=float(e_pos.detach().mean()),
                       energy_neg=float(e_neg.detach().mean()),
                       energy_sd=float(e_pos.detach().std()) if x.shape[0] > 1 else 0.0,
                       base_step=float(base_step))
        return StepOutput(losses=losses, metrics=metrics, negatives=x_gen.detach())

    def state_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "base_steps": self.base_steps,
                "block_left": self.block_left, "c_ready": self.c_ready}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        keys = {"calls", "base_steps", "block_left", "c_ready"}
        if set(state) != keys:
            raise ValueError(f"GEBM state must have keys {sorted(keys)}, got {sorted(state)}")
        self.calls, self.base_steps = int(state["calls"]), int(state["base_steps"])
        self.block_left, self.c_ready = int(state["block_left"]), bool(state["c_ready"])


# -- options and registration ------------------------------------------------------------


@dataclass
class GEBMOptions(MethodOptions):
    energy_steps: int = option(5, low=1, help="energy steps per base step")
    warmup_energy_steps: int = option(100, low=1, help="energy steps before the first base "
                                      "step and before every warmup_every-th one")
    warmup_every: int = option(500, low=0, help="base steps between warm-up blocks (0: only "
                               "at the start)")
    penalty: float = option(1.0, low=0.0, help="λ of the gradient penalty λ·mean ‖∇E‖² at "
                            "data/base interpolates")
    energy_floor: float | None = option(None, help="clamp the energy from below at this "
                                        "value (the reference code: −10); none: off")
    temperature: float = option(1.0, low=0.0, low_open=True,
                                help="T in the latent energy ½‖z‖² + E(G(z))/T")
    sample_steps: int = option(100, low=0, help="model samples: latent sampler steps from "
                               "z ~ N(0, I) (0: the base alone)")
    n_chains: int | None = option(None, low=1, help="base samples per iteration; default "
                                  "batch")
    init_samples: int = option(10000, low=1, help="latents in the Monte Carlo initial value "
                               "of c = log Z")


def build_gebm(ctx: BuildContext, opts: GEBMOptions) -> GEBM:
    energy = ctx.energy if opts.energy_floor is None else FlooredEnergy(ctx.energy,
                                                                        opts.energy_floor)
    return GEBM(energy, ctx.generator(), ctx.sampler("latent"),
                energy_steps=opts.energy_steps, warmup_energy_steps=opts.warmup_energy_steps,
                warmup_every=opts.warmup_every, penalty=opts.penalty,
                temperature=opts.temperature, sample_steps=opts.sample_steps,
                n_samples=opts.n_chains, init_samples=opts.init_samples)


register(MethodSpec("gebm", GEBMOptions, build_gebm,
                    roles={"latent": {"name": "langevin", "step_size": 0.01}},
                    groups=("energy", "base"), sections=("generator",),
                    help="generalized EBM: a base generator reweighted by an energy, trained "
                    "with KALE, sampled by MCMC in latent space"))
