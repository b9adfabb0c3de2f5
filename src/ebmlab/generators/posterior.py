"""The latent posterior of a generator model, as an energy on ``z`` (CoopNets' inference).

The generator model ``z ~ N(0, I_d)``, ``x = g(z) + ε``, ``ε ~ N(0, σ² I)`` (VALS paper,
Eq. 7–8) has the posterior ``q(z | x) ∝ N(z; 0, I) · N(x; g(z), σ² I)``, i.e. the energy

    U_x(z) = ½‖z‖² + ‖x − g(z)‖² / (2σ²)

per chain, each chain with its own ``x``. Alternating back-propagation (CoopNets)
samples it with Langevin from the latent that produced ``x``. With ``observed`` (1
where a pixel is observed, 0 where it is missing) only observed entries enter the
sum: the posterior given part of an image, used to start image completion.

Any sampler of the registry runs on it unchanged: the module holds the generator, so
the samplers' hygiene (eval mode, frozen parameters) applies to it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class GeneratorPosterior(nn.Module):
    """``U(z) = ½‖z‖² + Σ m ⊙ (x − g(z))² / (2σ²)``, ``(B, latent_dim) -> (B,)``.

    ``x`` has shape ``(B, *output_shape)`` (one row per chain); ``observed`` (``m``,
    default all ones) broadcasts against ``x``.
    """

    def __init__(self, generator: nn.Module, x: Tensor, sd: float,
                 observed: Tensor | None = None) -> None:
        super().__init__()
        if not sd > 0:
            raise ValueError(f"sd must be > 0, got {sd!r}")
        self.generator, self.sd = generator, float(sd)
        self.x = x.detach()
        self.observed = None if observed is None else observed.detach().to(x.dtype)
        if self.observed is not None:
            try:
                torch.broadcast_shapes(self.observed.shape, x.shape)
            except RuntimeError:
                raise ValueError(f"observed of shape {tuple(self.observed.shape)} does not "
                                 f"broadcast against x of shape {tuple(x.shape)}") from None

    def forward(self, z: Tensor) -> Tensor:
        if z.shape[0] != self.x.shape[0]:
            raise ValueError(f"{z.shape[0]} latent chains for {self.x.shape[0]} observations "
                             "(one chain per row of x)")
        sq = (self.x - self.generator(z).reshape(self.x.shape)).square()
        if self.observed is not None:
            sq = sq * self.observed
        return 0.5 * z.square().sum(1) + sq.reshape(z.shape[0], -1).sum(1) / (2 * self.sd**2)

    def extra_repr(self) -> str:
        return f"sd={self.sd:g}, chains={self.x.shape[0]}"


__all__ = ["GeneratorPosterior"]
