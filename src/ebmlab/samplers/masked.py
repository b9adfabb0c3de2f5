"""Sampling the missing coordinates of an image with the observed ones held exactly fixed.

With a mask ``m`` (1 = missing) and observed values ``x_o``, the conditional of the model
``p(x) ∝ exp(−U(x))`` is

    p(x_m | x_o) ∝ exp(−U(x_o ⊕ x_m)),

``x_o ⊕ x_m`` the image with the missing coordinates filled in. :class:`MaskedEnergy` is
that conditional as an energy of the missing coordinates only: the chains of any sampler
of the registry hold ``x_m`` (a ``(B, K)`` state, ``K`` the largest number of missing
coordinates of a row), so the observed coordinates are not part of the chain at all: they
stay bit-identical at every step, nothing is clamped after the fact, and a Metropolis
sampler (MALA, HMC) on the masked energy is exact for the conditional, since its accept
test sees the conditional energy.

Rows may have different masks (one per image). A row with fewer than ``K`` missing
coordinates gets padding coordinates with their own independent standard normal energy
``½‖x_pad − c‖²``: the joint target is the product of the conditional and that normal, so
the conditional's law is untouched for every sampler whose chains are independent; the
padding is dropped when the image is rebuilt. (It enters per-chain gradient norms, so
``grad_clip`` and AniLA's ``mode="norm"`` see it; with a single mask for all rows there is
no padding.)

SVGD moves its chains as interacting particles of one target, so :func:`sample_masked`
runs it separately on each group of rows that share the same condition. An energy with
exact block-Gibbs conditionals whose ``x | h`` factorises over coordinates (the
Gaussian–Bernoulli RBM: ``x | h ~ N(b + Bh, I)``) is sampled by masked block Gibbs:
``h ~ p(h | x_o ⊕ x_m)``, then ``x_m ~ p(x_m | h)``, exact for the conditional.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ebmlab.capabilities import BlockGibbs, has_block_gibbs
from ebmlab.energies import closed_form
from ebmlab.energies.closed_form import autograd_energy_and_grad
from ebmlab.samplers.base import Callback, Energy, Sampler


def as_mask(mask: Tensor, like: Tensor) -> Tensor:
    """``mask`` as a bool tensor of ``like``'s shape: one mask of ``like``'s event shape
    for every row, or one per row. Values must be 0/1 (or bool); ``True`` = missing."""
    if not isinstance(mask, Tensor):
        raise ValueError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    if tuple(mask.shape) == tuple(like.shape[1:]):
        mask = mask.unsqueeze(0).expand_as(like)
    if tuple(mask.shape) != tuple(like.shape):
        raise ValueError(f"mask of shape {tuple(mask.shape)} fits neither the chains "
                         f"{tuple(like.shape)} nor one of them {tuple(like.shape[1:])}")
    if mask.dtype != torch.bool:
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("mask values must be 0 (observed) or 1 (missing)")
        mask = mask != 0
    return mask.to(like.device)


class MaskedEnergy(nn.Module):
    """``U_c(x_m) = U(x_o ⊕ x_m) + ½‖x_pad − c‖²``: the energy of the missing coordinates
    of each row of ``x`` given its observed ones (``mask`` True / 1 = missing).

    ``restrict(x)`` takes the missing coordinates (the chain state), ``embed(z)`` rebuilds
    the full images from them, with the observed values of ``x`` exactly as given."""

    def __init__(self, energy: Energy, x: Tensor, mask: Tensor, pad_center: float = 0.0) -> None:
        super().__init__()
        mask = as_mask(mask, x)
        flat = mask.reshape(x.shape[0], -1)
        counts = flat.sum(dim=1)
        if bool((counts == 0).any()):
            row = int(torch.nonzero(counts == 0)[0, 0])
            raise ValueError(f"row {row} of the mask has no missing coordinate")
        self.energy = energy
        self.shape = tuple(x.shape)
        self.dim = flat.shape[1]
        k = int(counts.max())
        # Column indices of each row's missing coordinates in increasing order; padding
        # slots point at an extra column ``dim`` that is dropped after the scatter.
        order = torch.sort((~flat).to(torch.uint8), dim=1, stable=True).indices[:, :k]
        self.valid = torch.arange(k, device=x.device)[None, :] < counts[:, None]
        self.cols = torch.where(self.valid, order, torch.full_like(order, self.dim))
        self.fixed = x.detach().reshape(x.shape[0], -1).clone()
        self.mask = mask
        self.pad_center = float(pad_center)

    @property
    def n_missing(self) -> int:
        """``K``: coordinates per chain (the largest number of missing ones of a row)."""
        return self.cols.shape[1]

    def _scatter(self, z: Tensor) -> Tensor:
        fixed = self.fixed.to(z.dtype)
        ext = torch.cat((fixed, fixed.new_zeros(fixed.shape[0], 1)), dim=1)
        return ext.scatter(1, self.cols, z)[:, : self.dim].reshape(self.shape)

    def forward(self, z: Tensor) -> Tensor:
        if tuple(z.shape) != (self.shape[0], self.n_missing):
            raise ValueError(f"masked energy expects chains of shape "
                             f"{(self.shape[0], self.n_missing)}, got {tuple(z.shape)}")
        u = self.energy(self._scatter(z))
        pad = torch.where(self.valid, torch.zeros_like(z), z - self.pad_center)
        return u + 0.5 * pad.square().sum(dim=1)

    def energy_and_grad(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``(U_c(z), ∇U_c(z))`` from the full energy's closed form when it has one
        (:mod:`ebmlab.energies.closed_form`): ``∇U_c`` is ``∇U`` at the missing
        coordinates and ``x_pad − c`` at the padding. Autograd otherwise."""
        inner = getattr(self.energy, "energy_and_grad", None)
        if inner is None or not closed_form.enabled() or type(self) is not MaskedEnergy \
                or self._forward_hooks or self._forward_pre_hooks or self._backward_hooks \
                or self._backward_pre_hooks:
            return autograd_energy_and_grad(self, z)
        if tuple(z.shape) != (self.shape[0], self.n_missing):
            raise ValueError(f"masked energy expects chains of shape "
                             f"{(self.shape[0], self.n_missing)}, got {tuple(z.shape)}")
        u, gx = inner(self._scatter(z.detach()))
        with torch.no_grad():
            flat = gx.reshape(gx.shape[0], -1)
            ext = torch.cat((flat, flat.new_zeros(flat.shape[0], 1)), dim=1)
            pad = torch.where(self.valid, torch.zeros_like(z), z - self.pad_center)
            u = u + 0.5 * pad.square().sum(dim=1)
            g = torch.where(self.valid, ext.gather(1, self.cols), pad)
        return u, g

    def embed(self, z: Tensor) -> Tensor:
        """Full images ``(B, *shape)``: ``x``'s observed values, ``z`` in the missing ones."""
        with torch.no_grad():
            return self._scatter(z.detach())

    def restrict(self, x: Tensor) -> Tensor:
        """The chain state ``(B, K)`` of full images ``x``: their missing coordinates (the
        padding at its centre ``c``)."""
        flat = x.detach().reshape(x.shape[0], -1)
        ext = torch.cat((flat, flat.new_zeros(flat.shape[0], 1)), dim=1)
        z = ext.gather(1, self.cols)
        return torch.where(self.valid, z, torch.full_like(z, self.pad_center))


class MaskedBlockGibbsEnergy(MaskedEnergy):
    """A :class:`MaskedEnergy` of an energy with block-Gibbs conditionals whose ``x | h``
    factorises over coordinates: ``gibbs`` alternates ``h ~ p(h | x_o ⊕ x_m)`` and
    ``x_m ~ p(x_m | h)`` (a full ``x ~ p(x | h)`` whose observed part is discarded), and
    draws the padding from its normal law; exact for the conditional."""

    def gibbs(self, z: Tensor, n_steps: int = 1,
              generator: torch.Generator | None = None) -> Tensor:
        energy = self.energy
        if not isinstance(energy, BlockGibbs):
            raise TypeError(f"{type(energy).__name__} has no block-Gibbs conditionals")
        for _ in range(n_steps):
            x = energy.gibbs(self.embed(z), 1, generator).reshape(z.shape[0], -1)
            new = torch.cat((x, x.new_zeros(x.shape[0], 1)), dim=1).gather(1, self.cols)
            pad = self.pad_center + torch.randn(z.shape, generator=generator, dtype=new.dtype,
                                                device=new.device)
            z = torch.where(self.valid, new, pad).to(z.dtype)
        return z


def masked_energy(energy: Energy, x: Tensor, mask: Tensor, pad_center: float = 0.0
                  ) -> MaskedEnergy:
    """The conditional energy of ``x``'s missing coordinates (block-Gibbs when ``energy``
    offers it)."""
    cls = MaskedBlockGibbsEnergy if has_block_gibbs(energy) else MaskedEnergy
    return cls(energy, x, mask, pad_center)


def _couples_chains(sampler: Sampler) -> bool:
    from ebmlab.samplers.svgd import SVGD

    return isinstance(sampler, SVGD)


def _pad_center(sampler: Sampler) -> float:
    """Padding sits at 0, or at the middle of the sampler's clamp box if 0 is outside it."""
    box = getattr(sampler, "clamp", None)
    if box is None or box[0] <= 0.0 <= box[1]:
        return 0.0
    return 0.5 * (box[0] + box[1])


def sample_masked(
    sampler: Sampler,
    energy: Energy,
    x: Tensor,
    mask: Tensor,
    n_steps: int,
    *,
    x0: Tensor | None = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """``n_steps`` of ``sampler`` on ``p(x_m | x_o)`` for each row of ``x`` (chains ``(B,
    *shape)``; ``mask`` one for all rows or one per row, 1 = missing). The missing
    coordinates start from ``x0``'s (default: ``x``'s own). Returns full images: the
    observed coordinates are ``x``'s, bit for bit; the missing ones the chains' final states.
    """
    if not isinstance(x, Tensor) or x.dim() < 2 or x.shape[0] == 0:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must have shape (n_chains >= 1, *shape), got {shape}")
    mask = as_mask(mask, x)
    start = x if x0 is None else x0
    if tuple(start.shape) != tuple(x.shape):
        raise ValueError(f"x0 of shape {tuple(start.shape)} does not match x {tuple(x.shape)}")
    if _couples_chains(sampler):
        # One particle system per distinct condition (observed values and mask).
        key = torch.cat((torch.where(mask, torch.zeros_like(x), x).reshape(x.shape[0], -1),
                         mask.reshape(x.shape[0], -1).to(x.dtype)), dim=1)
        _, group = torch.unique(key, dim=0, return_inverse=True)
        out = x.detach().clone()
        for g in range(int(group.max()) + 1):
            rows = torch.nonzero(group == g)[:, 0]
            out[rows] = _run(sampler, energy, x[rows], mask[rows], start[rows], n_steps,
                             generator, callback)
        return out
    return _run(sampler, energy, x, mask, start, n_steps, generator, callback)


def _run(sampler: Sampler, energy: Energy, x: Tensor, mask: Tensor, start: Tensor,
         n_steps: int, generator: torch.Generator | None, callback: Callback | None) -> Tensor:
    cond = masked_energy(energy, x, mask, _pad_center(sampler))
    z = sampler.run(cond, cond.restrict(start), n_steps, generator=generator, callback=callback)
    full = cond.embed(z)
    # The observed values were never part of the chains; `where` only restores x's own
    # tensor (dtype, -0.0) for them.
    return torch.where(mask, full, x.detach())


__all__ = ["MaskedBlockGibbsEnergy", "MaskedEnergy", "as_mask", "masked_energy",
           "sample_masked"]
