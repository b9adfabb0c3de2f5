"""Block-Gibbs sweeps as a sampler, for energies with exact conditionals (the RBM).

One step is one sweep ``h ~ p(h | x)``, ``x ~ p(x | h)`` through the energy's own
``gibbs`` (see :class:`ebmlab.capabilities.BlockGibbs`); it leaves ``exp(−U)``
exactly invariant, so model samples of an RBM use it rather than Langevin.
"""

from __future__ import annotations

import torch

from ebmlab.capabilities import BlockGibbs
from ebmlab.samplers.base import Energy, Sampler, SamplerState, StepInfo


class GibbsSweeps(Sampler):
    """Exact block-Gibbs sweeps of an energy that offers ``gibbs(x, n, generator)``."""

    name = "gibbs"

    def step(self, energy: Energy, state: SamplerState, generator: torch.Generator | None = None
             ) -> tuple[SamplerState, StepInfo]:
        if not isinstance(energy, BlockGibbs):
            raise TypeError(f"Gibbs sweeps need an energy with exact block-Gibbs conditionals "
                            f"(gibbs(x, n, generator)); {type(energy).__name__} has none")
        with torch.no_grad():
            u = energy(state.x)
            x = energy.gibbs(state.x, 1, generator).reshape(state.x.shape).to(state.x.dtype)
        info = StepInfo(energy=u, grad_norm=torch.zeros_like(u))
        return SamplerState(x=x, n_steps=state.n_steps + 1), info
