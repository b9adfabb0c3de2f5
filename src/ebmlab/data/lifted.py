"""Data of low intrinsic dimension in more dimensions: a 2-D toy set lifted into ``R^D``.

``data.name = "<toy>_<D>d"`` (e.g. ``rings_16d``, ``8gaussians_8d``; ``3 <= D <= 1024``)
draws the toy set's points ``u ∈ R²`` and maps them by a fixed smooth embedding

    f(u) = Q u + ½ W sin(A u + b),      x = f(u) + σ ε,   ε ~ N(0, I_D),  σ = 0.03,

``Q`` (D×2) with orthonormal columns, ``A`` (H×2, H = 16), ``b`` and ``W`` (D×H) random,
drawn once from a generator seeded by ``D`` alone (every data seed, train and test share
one map), with ``‖W‖₂ = 1`` and ``‖A‖₂ = 1.6``: the sine part is 0.8-Lipschitz, so
``‖f(u) − f(v)‖ ≥ 0.2 ‖u − v‖`` and ``f`` is a bi-Lipschitz embedding of the plane — a
curved 2-D sheet in ``R^D`` — thickened by a small isotropic noise. Its density in ``R^D``
has no closed form (nearly singular), hence no exact log-likelihood; sample quality is
measured by MMD and sliced Wasserstein distances to held-out points.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

LIFT_NOISE = 0.03
LIFT_HIDDEN = 16
LIFT_MAX_DIM = 1024
_PATTERN = re.compile(r"^(?P<toy>.+)_(?P<dim>\d+)d$")


def parse_lifted(name: str) -> tuple[str, int] | None:
    """``("rings", 16)`` for ``"rings_16d"``; ``None`` when ``name`` is not of that form.
    The toy part is not checked here; a dimension out of range raises ``ValueError``."""
    m = _PATTERN.match(name) if isinstance(name, str) else None
    if m is None:
        return None
    dim = int(m.group("dim"))
    if not 3 <= dim <= LIFT_MAX_DIM:
        raise ValueError(f"data.name {name!r}: a lifted set needs 3 <= D <= {LIFT_MAX_DIM}, "
                         f"got D = {dim}")
    return m.group("toy"), dim


class LiftMap:
    """The fixed embedding ``f: R² → R^D`` of this module (float64 parameters)."""

    def __init__(self, dim: int) -> None:
        g = torch.Generator().manual_seed(7919 * dim + 17)
        q, _ = torch.linalg.qr(torch.randn(dim, 2, generator=g, dtype=torch.float64))
        a = torch.randn(LIFT_HIDDEN, 2, generator=g, dtype=torch.float64)
        w = torch.randn(dim, LIFT_HIDDEN, generator=g, dtype=torch.float64)
        self.q = q
        self.a = a * (1.6 / torch.linalg.matrix_norm(a, ord=2))
        self.b = 2 * torch.pi * torch.rand(LIFT_HIDDEN, generator=g, dtype=torch.float64)
        self.w = w / torch.linalg.matrix_norm(w, ord=2)
        self.dim = dim

    def __call__(self, u: Tensor) -> Tensor:
        u = u.to(torch.float64)
        return u @ self.q.T + 0.5 * torch.sin(u @ self.a.T + self.b) @ self.w.T


def lift(points: Tensor, dim: int, seed: int, noise: float = LIFT_NOISE) -> Tensor:
    """``f(points) + noise·ε`` as float32, ``ε`` from a generator seeded by ``seed``."""
    x = LiftMap(dim)(points)
    g = torch.Generator().manual_seed(seed)
    x = x + noise * torch.randn(x.shape, generator=g, dtype=torch.float64)
    return x.to(torch.float32)
