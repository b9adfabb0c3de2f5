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
Langevin step); gradient clipping and clamping live in the sampler.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ebmlab.chains import ChainSource
from ebmlab.methods.base import Method, StepOutput
from ebmlab.samplers.base import Sampler

REGIMES = ("short_run", "persistent", "cd")


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
        self.noise = noise

    def noise_init(self, n: int, generator: torch.Generator | None = None) -> Tensor | None:
        """Fresh noise chains (for the long-run check from noise), if the method has a source."""
        return None if self.noise is None else self.noise.sample(n, generator=generator)

    def modules(self) -> dict[str, nn.Module]:
        return {"energy": self.energy}

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor | None:
        """Short-run samples: ``n_steps`` sampler steps from the noise source."""
        x0 = self.noise_init(n, generator)
        return None if x0 is None else self.sampler.run(self.energy, x0, self.n_steps,
                                                        generator=generator)

    def lr_scale(self) -> float:
        step = getattr(self.sampler, "step_size", None)
        return float(step) if self.invariant_tuning and step is not None else 1.0

    def initial_chains(self, batch: Tensor, generator: torch.Generator | None) -> Tensor:
        if self.name == "cd":
            return batch.detach()
        assert self.chains is not None
        n = self.n_chains or batch.shape[0]
        return self.chains.sample(n, generator=generator).to(batch.device, batch.dtype)

    def step(self, batch: Tensor, generator: torch.Generator | None = None) -> StepOutput:
        x_pos = batch
        if self.data_noise > 0:
            x_pos = batch + self.data_noise * torch.randn(
                batch.shape, generator=generator, dtype=batch.dtype, device=batch.device)
        x0 = self.initial_chains(x_pos, generator)
        grad_norms: list[Tensor] = []
        accepts: list[Tensor] = []

        def record(i: int, state: Any, info: Any) -> None:
            grad_norms.append(info.grad_norm.mean())
            if info.accept_prob is not None:
                accepts.append(info.accept_prob.mean())

        x_neg = self.sampler.run(self.energy, x0, self.n_steps, generator=generator,
                                 callback=record)
        if self.chains is not None and self.name != "cd":
            self.chains.update(x_neg)
        u_pos, u_neg = self.energy(x_pos), self.energy(x_neg)
        d_st = u_pos.mean() - u_neg.mean()
        loss = d_st
        if self.energy_penalty > 0:
            loss = loss + self.energy_penalty * (u_pos.square().mean() + u_neg.square().mean())
        step = float(getattr(self.sampler, "step_size", 0.0))
        metrics = {
            "d_st": float(d_st.detach()),
            "r_t": step * float(torch.stack(grad_norms).mean()),
            "energy_pos": float(u_pos.detach().mean()),
            "energy_neg": float(u_neg.detach().mean()),
        }
        if accepts:
            metrics["accept"] = float(torch.stack(accepts).mean())
        return StepOutput(losses={"energy": loss}, metrics=metrics, negatives=x_neg)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.chains is None else {f"chains.{k}": v
                                               for k, v in self.chains.state_dict().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.chains is not None:
            self.chains.load_state_dict({k[7:]: v for k, v in state.items()
                                         if k.startswith("chains.")})
        elif state:
            raise ValueError(f"unexpected method state {sorted(state)}")
