"""2-D toy data sets, in the spirit of the FFJORD / "Anatomy of MCMC-based EBMs" toy code.

Every data set is a function ``f(n, seed=0) -> Tensor`` of shape ``(n, 2)``, dtype
``float32``, drawn i.i.d. from a fixed distribution with a local
``torch.Generator`` seeded by ``seed`` (the global RNG is never touched), so the
same ``(n, seed)`` always gives the same points.

The distributions (all scales are in the final data coordinates):

==============  ==============================================================
``8gaussians``  ``(1/8) Σₖ N(cₖ, σ² I)``, ``cₖ = 2√2 (cos kπ/4, sin kπ/4)``,
                ``σ = 1/(2√2) ≈ 0.354`` (FFJORD: centres at radius 4, sd 0.5,
                then everything divided by √2).
``25gaussians`` ``(1/25) Σ N(c, σ² I)`` over the 5×5 grid
                ``c ∈ {−3, −1.5, 0, 1.5, 3}²``, ``σ = 0.2`` (mode spacing 7.5 σ).
``rings``       :class:`ebmlab.energies.Rings` with its defaults: radii 1, 2, 3, 4
                equally weighted, radial sd 0.15, uniform angle.
``checkerboard`` uniform on the 8 squares of side 2 in ``[−4, 4)²`` with
                ``⌊x/2⌋ + ⌊y/2⌋`` even, density ``1/32`` there (FFJORD layout).
``swissroll``   ``t = 1.5π (1 + 2u)``, ``u ~ U(0, 1)``; ``x = (t cos t, t sin t)/5 + 0.2 ε``
                (sklearn's swiss roll with noise 1, columns 0 and 2, divided by 5).
``moons``       two half circles (sklearn's moons, noise 0.1) mapped by
                ``2x + (−1, −0.2)``: the arc angle is ``U(0, π)`` and the moon a fair coin
                (i.i.d., where sklearn spaces angles evenly); final noise sd 0.2.
``pinwheel``    5 arms, chosen uniformly; ``f ~ N((1, 0), diag(0.3², 0.1²))`` rotated by
                ``2πk/5 + 0.25 exp(f₁)``, then scaled by 2.
``2spirals``    ``s = 3π √u``; arm point ``(−s cos s + a/2, s sin s + b/2)`` with
                ``a, b ~ U(0, 1)``, sign ±1 by a fair coin, divided by 3, plus ``0.1 ε``.
==============  ==============================================================

Exact data densities: :func:`toy_log_density` returns ``log p`` for
``8gaussians``, ``25gaussians`` (Gaussian mixtures), ``rings`` and ``checkerboard``
(piecewise constant, ``−inf`` off its support). ``swissroll``, ``moons``,
``pinwheel`` and ``2spirals`` are noisy push-forwards of a 1-D (or non-invertible)
latent: their density is an integral over the latent with no closed form, so
``None`` is returned for them. Samples of the analytic sets are drawn with the
target's own exact ``sample`` so data and density agree exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ebmlab.energies.analytic import AnalyticEnergy, GaussianMixture, Rings

ToyFn = Callable[..., Tensor]
LogDensity = Callable[[Tensor], Tensor]

EIGHT_RADIUS = 2.0 * math.sqrt(2.0)
EIGHT_SD = 1.0 / (2.0 * math.sqrt(2.0))
GRID25_SPACING = 1.5
GRID25_SD = 0.2
CHECKER_LOG_DENSITY = -math.log(32.0)


# -- helpers -----------------------------------------------------------------------
def _generator(seed: int) -> torch.Generator:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    return torch.Generator().manual_seed(seed)


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    return n


def _out(x: Tensor) -> Tensor:
    return x.to(torch.float32).contiguous()


def _draw(target: AnalyticEnergy, n: int, seed: int) -> Tensor:
    g = _generator(seed)
    if _check_n(n) == 0:
        return torch.empty((0, 2), dtype=torch.float32)
    return _out(target.sample(n, generator=g))


# -- exact targets -------------------------------------------------------------------
def eight_gaussians_target() -> GaussianMixture:
    """The 8gaussians mixture: 8 equal components on a circle of radius ``2√2``, sd ``1/(2√2)``."""
    angles = torch.arange(8, dtype=torch.float64) * (math.pi / 4)
    means = EIGHT_RADIUS * torch.stack((torch.cos(angles), torch.sin(angles)), dim=1)
    return GaussianMixture(means, stds=EIGHT_SD)


def twentyfive_gaussians_target() -> GaussianMixture:
    """The 25gaussians mixture: centres ``{−3, −1.5, 0, 1.5, 3}²``, sd ``0.2``, equal weights."""
    ticks = GRID25_SPACING * torch.arange(-2, 3, dtype=torch.float64)
    gx, gy = torch.meshgrid(ticks, ticks, indexing="ij")
    means = torch.stack((gx.reshape(-1), gy.reshape(-1)), dim=1)
    return GaussianMixture(means, stds=GRID25_SD)


def rings_target() -> Rings:
    """:class:`~ebmlab.energies.Rings` with its defaults (radii 1..4, radial sd 0.15)."""
    return Rings()


# -- data sets -----------------------------------------------------------------------
def eight_gaussians(n: int, seed: int = 0) -> Tensor:
    """``n`` draws from the 8gaussians mixture (see :func:`eight_gaussians_target`)."""
    return _draw(eight_gaussians_target(), n, seed)


def twentyfive_gaussians(n: int, seed: int = 0) -> Tensor:
    """``n`` draws from the 25gaussians mixture (see :func:`twentyfive_gaussians_target`)."""
    return _draw(twentyfive_gaussians_target(), n, seed)


def rings(n: int, seed: int = 0) -> Tensor:
    """``n`` exact draws from :class:`~ebmlab.energies.Rings` (radii 1..4, radial sd 0.15)."""
    return _draw(rings_target(), n, seed)


def checkerboard(n: int, seed: int = 0) -> Tensor:
    """Uniform on ``{(x, y) ∈ [−4, 4)²: ⌊x/2⌋ + ⌊y/2⌋ even}`` (8 squares of side 2)."""
    g = _generator(seed)
    n = _check_n(n)
    # A uniform column of squares, then one of its two admissible rows (same parity).
    col = torch.randint(-2, 2, (n,), generator=g)
    row = -2 + torch.remainder(col, 2) + 2 * torch.randint(0, 2, (n,), generator=g)
    corner = 2.0 * torch.stack((col, row), dim=1).to(torch.float32)
    offset = 2.0 * torch.rand((n, 2), generator=g, dtype=torch.float64)
    x = corner + offset.to(torch.float32)
    # Rounding to float32 may land exactly on the far edge of the half-open square.
    return torch.minimum(x, torch.nextafter(corner + 2.0, corner)).contiguous()


def swissroll(n: int, seed: int = 0) -> Tensor:
    """``(t cos t, t sin t)/5 + 0.2 ε`` with ``t = 1.5π(1 + 2u)``, ``u ~ U(0, 1)``."""
    g = _generator(seed)
    n = _check_n(n)
    t = 1.5 * math.pi * (1.0 + 2.0 * torch.rand(n, generator=g, dtype=torch.float64))
    eps = torch.randn((n, 2), generator=g, dtype=torch.float64)
    x = torch.stack((t * torch.cos(t), t * torch.sin(t)), dim=1) / 5.0 + 0.2 * eps
    return _out(x)


def moons(n: int, seed: int = 0) -> Tensor:
    """Two interleaved half circles, noise sd 0.1, then ``2x + (−1, −0.2)``."""
    g = _generator(seed)
    n = _check_n(n)
    theta = math.pi * torch.rand(n, generator=g, dtype=torch.float64)
    inner = torch.randint(0, 2, (n,), generator=g).to(torch.bool)
    c, s = torch.cos(theta), torch.sin(theta)
    px = torch.where(inner, 1.0 - c, c)
    py = torch.where(inner, 0.5 - s, s)
    x = torch.stack((px, py), dim=1) + 0.1 * torch.randn((n, 2), generator=g, dtype=torch.float64)
    shift = torch.tensor([-1.0, -0.2], dtype=torch.float64)
    return _out(2.0 * x + shift)


def pinwheel(n: int, seed: int = 0) -> Tensor:
    """5 arms: ``f ~ N((1, 0), diag(0.09, 0.01))`` rotated by ``2πk/5 + 0.25 e^{f₁}``, times 2."""
    g = _generator(seed)
    n = _check_n(n)
    arm = torch.randint(0, 5, (n,), generator=g).to(torch.float64)
    f = torch.randn((n, 2), generator=g, dtype=torch.float64)
    f = f * torch.tensor([0.3, 0.1], dtype=torch.float64) + torch.tensor([1.0, 0.0],
                                                                        dtype=torch.float64)
    angle = 2.0 * math.pi * arm / 5.0 + 0.25 * torch.exp(f[:, 0])
    c, s = torch.cos(angle), torch.sin(angle)
    # Row vector f times [[c, -s], [s, c]].
    x = torch.stack((f[:, 0] * c + f[:, 1] * s, -f[:, 0] * s + f[:, 1] * c), dim=1)
    return _out(2.0 * x)


def spirals(n: int, seed: int = 0) -> Tensor:
    """Two interleaved spirals: ``s = 3π√u``, ``±(−s cos s + a/2, s sin s + b/2)/3 + 0.1 ε``."""
    g = _generator(seed)
    n = _check_n(n)
    s = 3.0 * math.pi * torch.sqrt(torch.rand(n, generator=g, dtype=torch.float64))
    jitter = 0.5 * torch.rand((n, 2), generator=g, dtype=torch.float64)
    arm = torch.stack((-s * torch.cos(s), s * torch.sin(s)), dim=1) + jitter
    sign = 2.0 * torch.randint(0, 2, (n, 1), generator=g).to(torch.float64) - 1.0
    eps = torch.randn((n, 2), generator=g, dtype=torch.float64)
    return _out(sign * arm / 3.0 + 0.1 * eps)


TOY_DATASETS: dict[str, ToyFn] = {
    "8gaussians": eight_gaussians,
    "25gaussians": twentyfive_gaussians,
    "rings": rings,
    "checkerboard": checkerboard,
    "swissroll": swissroll,
    "moons": moons,
    "pinwheel": pinwheel,
    "2spirals": spirals,
}
"""Canonical name -> data set function ``f(n, seed)``."""

_ALIASES = {
    "eight_gaussians": "8gaussians",
    "twentyfive_gaussians": "25gaussians",
    "spirals": "2spirals",
}

_BOUNDS: dict[str, tuple[float, float]] = {
    "8gaussians": (-5.0, 5.0),
    "25gaussians": (-5.0, 5.0),
    "rings": (-5.0, 5.0),
    "checkerboard": (-5.0, 5.0),
    "swissroll": (-4.0, 4.0),
    "moons": (-4.0, 4.0),
    "pinwheel": (-5.0, 5.0),
    "2spirals": (-4.0, 4.0),
}


def canonical_name(name: str) -> str:
    """The registry key for ``name`` (also accepts the function names, e.g. ``spirals``)."""
    key = _ALIASES.get(name, name) if isinstance(name, str) else name
    if key not in TOY_DATASETS:
        valid = ", ".join(TOY_DATASETS)
        raise ValueError(f"unknown toy data set {name!r}; valid names: {valid}")
    return key


def make_toy(name: str, n: int, seed: int = 0) -> Tensor:
    """``n`` points of the toy set ``name`` as a float32 ``(n, 2)`` tensor, reproducible by seed."""
    return TOY_DATASETS[canonical_name(name)](n, seed)


def toy_target(name: str) -> AnalyticEnergy | None:
    """The exact analytic target (an energy with ``log_prob``/``sample``) or ``None``."""
    key = canonical_name(name)
    if key == "8gaussians":
        return eight_gaussians_target()
    if key == "25gaussians":
        return twentyfive_gaussians_target()
    if key == "rings":
        return rings_target()
    return None


def checkerboard_log_density(x: Tensor) -> Tensor:
    """``log p(x) = −log 32`` on the checkerboard squares (half-open), ``−inf`` elsewhere."""
    if x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"expected shape (B, 2), got {tuple(x.shape)}")
    inside = ((x >= -4.0) & (x < 4.0)).all(dim=1)
    cells = torch.floor(x / 2.0)
    even = torch.remainder(cells.sum(dim=1), 2.0) == 0
    dtype = x.dtype if x.is_floating_point() else torch.float32
    out = torch.full((x.shape[0],), -math.inf, dtype=dtype, device=x.device)
    return out.masked_fill(inside & even, CHECKER_LOG_DENSITY)


def toy_log_density(name: str) -> LogDensity | None:
    """Exact normalised ``log p_data`` for ``name``, as ``x (B, 2) -> (B,)``, or ``None``.

    Known for ``8gaussians``, ``25gaussians``, ``rings`` and ``checkerboard``; the
    other sets have no closed-form density (see the module docstring).
    """
    key = canonical_name(name)
    if key == "checkerboard":
        return checkerboard_log_density
    target = toy_target(key)
    return None if target is None else target.log_prob


def toy_bounds(name: str) -> tuple[float, float]:
    """A square box ``(low, high)`` (same for both axes) holding essentially all the mass.

    Mass outside is below ~1e-6 for every set (≥ 4.7 sd past the furthest structure;
    the checkerboard's support ``[−4, 4)²`` lies strictly inside its box).
    """
    return _BOUNDS[canonical_name(name)]


__all__ = [
    "TOY_DATASETS",
    "canonical_name",
    "checkerboard",
    "checkerboard_log_density",
    "eight_gaussians",
    "eight_gaussians_target",
    "make_toy",
    "moons",
    "pinwheel",
    "rings",
    "rings_target",
    "spirals",
    "swissroll",
    "toy_bounds",
    "toy_log_density",
    "toy_target",
    "twentyfive_gaussians",
    "twentyfive_gaussians_target",
]
