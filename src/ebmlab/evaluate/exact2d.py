"""Exact evaluation of 2-D energies by quadrature on a grid.

For an energy ``U`` on ℝ² with model ``p_θ(x) = exp(−U(x)) / Z``, the box
``B = [a₁, b₁] × [a₂, b₂]`` is cut into ``n × n`` cells of area ``h₁h₂`` and the
midpoint rule gives::

    Z ≈ h₁h₂ Σᵢⱼ exp(−U(cᵢⱼ)),    log Z = log(h₁h₂) + logsumexp_ij(−U(cᵢⱼ))

with ``cᵢⱼ`` the cell centres. For a smooth density that has decayed inside the box
the rule converges exponentially fast in ``1/h`` (it is the trapezoid rule of an
effectively periodic function), so the only error that matters is the mass
outside ``B``. That is watched through ``edge_mass``: the share of the grid's mass
in its border ring (the outer ``max(1, ⌈n/50⌉)`` cells on each side, i.e. 2% of the
box width). Above ``1e-4`` a :class:`QuadratureWarning` says the box is too small.

Energies are evaluated under ``torch.no_grad`` in batches, in eval mode (restored
after), on a grid in the dtype and device of the energy's parameters (float64 when
it has none); every sum is done in float64.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ebmlab.data.toy2d import toy_bounds, toy_log_density

Box = tuple[tuple[float, float], tuple[float, float]]
BoundsLike = Sequence[float] | Sequence[Sequence[float]]
Fn2d = Callable[[Tensor], Tensor]

DEFAULT_N_GRID = 500
"""Cells per axis: 250 000 energy evaluations, ``h = 0.02`` on the ``[−5, 5]²`` toy box."""
EDGE_MASS_TOL = 1e-4
BORDER_FRACTION = 0.02
BATCH_SIZE = 65_536
MIN_N_GRID = 10


class QuadratureWarning(UserWarning):
    """The quadrature box misses mass (the density has not decayed at its border)."""


# -- boxes and grids ---------------------------------------------------------------------
def as_box(bounds: BoundsLike) -> Box:
    """Normalise ``(lo, hi)`` (both axes) or ``((lo_x, hi_x), (lo_y, hi_y))`` to the latter."""
    try:
        if len(bounds) == 2 and all(np.ndim(b) == 0 for b in bounds):
            lo, hi = float(bounds[0]), float(bounds[1])  # type: ignore[arg-type]
            box = ((lo, hi), (lo, hi))
        else:
            (a, b), (c, d) = bounds  # type: ignore[misc]
            box = ((float(a), float(b)), (float(c), float(d)))
    except (TypeError, ValueError):
        raise ValueError(
            f"bounds must be (lo, hi) or ((lo_x, hi_x), (lo_y, hi_y)), got {bounds!r}"
        ) from None
    for lo, hi in box:
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"bounds must be finite with lo < hi, got {bounds!r}")
    return box


def bounds_from_points(*points: Tensor | np.ndarray, pad: float = 0.5) -> Box:
    """Box around the given ``(N, 2)`` point sets, each axis padded by ``pad ×`` its range.

    An axis with (near) zero range gets a half-width of at least 1.
    """
    arrays = [np.asarray(_as_tensor(p).detach().cpu(), dtype=np.float64) for p in points]
    arrays = [a for a in arrays if a.size]
    if not arrays:
        raise ValueError("no points to derive bounds from; pass bounds explicitly")
    pts = np.concatenate([a.reshape(-1, 2) for a in arrays])
    pts = pts[np.isfinite(pts).all(axis=1)]
    if not len(pts):
        raise ValueError("no finite points to derive bounds from; pass bounds explicitly")
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    centre, half = (lo + hi) / 2, np.maximum((hi - lo) / 2 * (1 + 2 * pad), 1.0)
    return (
        (float(centre[0] - half[0]), float(centre[0] + half[0])),
        (float(centre[1] - half[1]), float(centre[1] + half[1])),
    )


@dataclass(frozen=True)
class Grid:
    """Midpoint grid: ``n × n`` cells over ``box``; centres ``xs``, ``ys`` (float64)."""

    box: Box
    n_grid: int
    xs: Tensor
    ys: Tensor

    @property
    def cell_area(self) -> float:
        (a, b), (c, d) = self.box
        return (b - a) * (d - c) / self.n_grid**2

    def rows(self, start: int, stop: int) -> Tensor:
        """Centres of rows ``start:stop`` (``y`` index), as ``((stop−start)·n, 2)``, x fastest."""
        gy, gx = torch.meshgrid(self.ys[start:stop], self.xs, indexing="ij")
        return torch.stack((gx.reshape(-1), gy.reshape(-1)), dim=1)

    def points(self) -> Tensor:
        """All centres, ``(n², 2)``, row-major with ``x`` fastest (matches ``(ny, nx)`` maps)."""
        return self.rows(0, self.n_grid)


def make_grid(bounds: BoundsLike, n_grid: int = DEFAULT_N_GRID) -> Grid:
    """The midpoint grid of ``n_grid × n_grid`` cells over ``bounds``."""
    if isinstance(n_grid, bool) or not isinstance(n_grid, int) or n_grid < MIN_N_GRID:
        raise ValueError(f"n_grid must be an integer >= {MIN_N_GRID}, got {n_grid!r}")
    box = as_box(bounds)
    centres = (torch.arange(n_grid, dtype=torch.float64) + 0.5) / n_grid
    (a, b), (c, d) = box
    return Grid(box, n_grid, a + (b - a) * centres, c + (d - c) * centres)


# -- evaluating callables --------------------------------------------------------------
def _as_tensor(x: Tensor | np.ndarray | Sequence) -> Tensor:
    return x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))


def _dtype_device(fn: Fn2d) -> tuple[torch.dtype, torch.device]:
    if isinstance(fn, nn.Module):
        for p in fn.parameters():
            if p.is_floating_point():
                return p.dtype, p.device
        for b in fn.buffers():
            return torch.float64, b.device
    return torch.float64, torch.device("cpu")


@contextlib.contextmanager
def _eval_mode(fn: Fn2d) -> Iterator[None]:
    """Put a module in eval mode (no dropout / power iterations), restoring each flag after."""
    modules = list(fn.modules()) if isinstance(fn, nn.Module) else []
    flags = [m.training for m in modules]
    for m in modules:
        m.training = False
    try:
        yield
    finally:
        for m, flag in zip(modules, flags, strict=True):
            m.training = flag


def _call(fn: Fn2d, x: Tensor, what: str) -> Tensor:
    """``fn(x)`` as a float64 CPU tensor of shape ``(B,)``."""
    dtype, device = _dtype_device(fn)
    out = fn(x.to(device=device, dtype=dtype))
    if not isinstance(out, Tensor) or out.shape != (x.shape[0],):
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"{what} must map shape ({x.shape[0]}, 2) to ({x.shape[0]},), got {shape}")
    return out.detach().to(device="cpu", dtype=torch.float64)


def _on_grid(fn: Fn2d, grid: Grid, what: str, batch_size: int = BATCH_SIZE) -> Tensor:
    n = grid.n_grid
    step = max(1, batch_size // n)
    blocks = []
    with torch.no_grad(), _eval_mode(fn):
        for start in range(0, n, step):
            blocks.append(_call(fn, grid.rows(start, min(n, start + step)), what))
    return torch.cat(blocks).reshape(n, n)


def energy_on_grid(energy: Fn2d, grid: Grid) -> Tensor:
    """``U`` at the grid centres, float64, shape ``(n, n)`` indexed ``[y, x]``."""
    u = _on_grid(energy, grid, "energy")
    if torch.isnan(u).any():
        raise ValueError(f"energy is NaN at {int(torch.isnan(u).sum())} grid points")
    if (u == -math.inf).any():
        raise ValueError("energy is -inf at some grid points: the density is not integrable")
    if (u == math.inf).all():
        raise ValueError("energy is +inf at every grid point: no mass in the box")
    return u


def _points_2d(x: Tensor | np.ndarray, name: str) -> Tensor:
    t = _as_tensor(x)
    if t.dim() != 2 or t.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2), got {tuple(t.shape)}")
    return t.detach().to(torch.float64)


# -- log Z -----------------------------------------------------------------------------
@dataclass(frozen=True)
class PartitionResult:
    """``log_z`` by quadrature, and ``edge_mass``: the share of the mass in the border cells."""

    log_z: float
    edge_mass: float
    box: Box
    n_grid: int

    def __float__(self) -> float:
        return self.log_z


def _border_mask(n: int) -> Tensor:
    k = max(1, math.ceil(BORDER_FRACTION * n))
    mask = torch.ones((n, n), dtype=torch.bool)
    mask[k:-k, k:-k] = False
    return mask


def _partition(log_f: Tensor, grid: Grid, warn: bool) -> PartitionResult:
    lse = torch.logsumexp(log_f.reshape(-1), 0).item()
    edge = math.exp(torch.logsumexp(log_f[_border_mask(grid.n_grid)], 0).item() - lse)
    if warn and edge > EDGE_MASS_TOL:
        warnings.warn(
            QuadratureWarning(
                f"{edge:.2e} of the model's mass lies in the border cells of the box "
                f"{grid.box}: the box is too small, log Z is underestimated; widen the bounds"
            ),
            stacklevel=3,
        )
    return PartitionResult(lse + math.log(grid.cell_area), edge, grid.box, grid.n_grid)


def _resolve_box(bounds: BoundsLike | None, *points: Tensor | np.ndarray | None) -> Box:
    if bounds is not None:
        return as_box(bounds)
    given = [p for p in points if p is not None]
    if not given:
        raise ValueError("bounds are required when no data or test points are given")
    return bounds_from_points(*given)


def log_partition(
    energy: Fn2d,
    bounds: BoundsLike | None = None,
    n_grid: int = DEFAULT_N_GRID,
    *,
    points: Tensor | np.ndarray | None = None,
    warn: bool = True,
) -> PartitionResult:
    """``log Z = log ∫_B exp(−U)`` by the midpoint rule on ``n_grid²`` cells.

    ``bounds`` is ``(lo, hi)`` or ``((lo_x, hi_x), (lo_y, hi_y))``; without it the box
    is derived from ``points`` (their range, padded by 50% per side). Warns with
    :class:`QuadratureWarning` when ``edge_mass > 1e-4``.
    """
    grid = make_grid(_resolve_box(bounds, points), n_grid)
    return _partition(-energy_on_grid(energy, grid), grid, warn)


def _log_z_value(log_z: float | PartitionResult) -> float:
    return log_z.log_z if isinstance(log_z, PartitionResult) else float(log_z)


def log_density(
    energy: Fn2d, x: Tensor | np.ndarray, log_z: float | PartitionResult
) -> Tensor:
    """Normalised ``log p_θ(x) = −U(x) − log Z``, float64, shape ``(B,)``."""
    pts = _points_2d(x, "x")
    chunks = [torch.empty(0, dtype=torch.float64)]
    with torch.no_grad(), _eval_mode(energy):
        for i in range(0, len(pts), BATCH_SIZE):
            chunks.append(_call(energy, pts[i : i + BATCH_SIZE], "energy"))
    return -torch.cat(chunks) - _log_z_value(log_z)


def nll(
    energy: Fn2d,
    x_test: Tensor | np.ndarray,
    log_z: float | PartitionResult | None = None,
    *,
    bounds: BoundsLike | None = None,
    n_grid: int = DEFAULT_N_GRID,
) -> float:
    """Mean negative log-likelihood ``−(1/N) Σ log p_θ(xₙ)`` in nats.

    ``log Z`` is computed by :func:`log_partition` when not given (box from
    ``bounds``, else from ``x_test``).
    """
    pts = _points_2d(x_test, "x_test")
    if len(pts) == 0:
        raise ValueError("x_test is empty")
    if log_z is None:
        log_z = log_partition(energy, bounds, n_grid, points=pts)
    return -log_density(energy, pts, log_z).mean().item()


# -- KL ---------------------------------------------------------------------------------
def _kl(log_p: Tensor, log_f: Tensor, part: PartitionResult, cell_area: float,
        warn: bool) -> float:
    if torch.isnan(log_p).any() or (log_p == math.inf).any():
        raise ValueError("log_p_data is NaN or +inf at some grid points")
    p = torch.exp(log_p)
    data_mass = p.sum().item() * cell_area
    if warn and 1.0 - data_mass > EDGE_MASS_TOL:
        warnings.warn(
            QuadratureWarning(
                f"the data density has mass {data_mass:.6f} < 1 on the box {part.box}: "
                "widen the bounds"
            ),
            stacklevel=3,
        )
    log_q = log_f - part.log_z
    support = p > 0
    if (support & (log_q == -math.inf)).any():
        return math.inf
    terms = torch.where(support, p * (log_p - log_q), torch.zeros_like(p))
    return terms.sum().item() * cell_area


def kl_divergence(
    log_p_data: Fn2d,
    energy: Fn2d,
    bounds: BoundsLike,
    n_grid: int = DEFAULT_N_GRID,
    *,
    warn: bool = True,
) -> float:
    """``KL(p_data ‖ p_θ) = ∫_B p_data (log p_data − log p_θ)`` by the midpoint rule.

    ``log_p_data`` is a normalised log-density ``(B, 2) -> (B,)``; cells where it is
    ``−inf`` contribute 0. ``log Z`` of ``p_θ`` is computed on the same grid. Warns
    (:class:`QuadratureWarning`) if the box misses model mass or data mass.
    """
    grid = make_grid(bounds, n_grid)
    log_f = -energy_on_grid(energy, grid)
    part = _partition(log_f, grid, warn)
    log_p = _on_grid(log_p_data, grid, "log_p_data")
    return _kl(log_p, log_f, part, grid.cell_area, warn)


# -- grids for plots and the one-call evaluation --------------------------------------
def grid_log_density(
    energy: Fn2d, bounds: BoundsLike, n_grid: int = DEFAULT_N_GRID, *, warn: bool = False
) -> tuple[Tensor, Tensor, Tensor, PartitionResult]:
    """``(xs, ys, log p_θ, result)``: cell centres and the normalised log-density ``[y, x]``."""
    grid = make_grid(bounds, n_grid)
    log_f = -energy_on_grid(energy, grid)
    part = _partition(log_f, grid, warn)
    return grid.xs, grid.ys, log_f - part.log_z, part


def evaluate_2d(
    energy: Fn2d,
    data: str | Fn2d | None = None,
    x_test: Tensor | np.ndarray | None = None,
    *,
    bounds: BoundsLike | None = None,
    n_grid: int = DEFAULT_N_GRID,
    warn: bool = True,
) -> dict[str, float]:
    """Exact 2-D evaluation of ``energy`` in one grid pass.

    ``data`` is a toy set name (its exact density and :func:`toy_bounds` box are used),
    a normalised log-density callable, or ``None``. The box is ``bounds``, else the toy
    set's box, else derived from ``x_test``. Returns ``log_z`` and ``edge_mass``, plus
    ``kl`` = KL(p_data ‖ p_θ) when the data density is known and ``nll`` (nats) when
    ``x_test`` is given; keys that cannot be computed are left out.
    """
    log_p_data: Fn2d | None
    default_box: Box | None = None
    if isinstance(data, str):
        log_p_data = toy_log_density(data)
        default_box = as_box(toy_bounds(data))
    elif data is None or callable(data):
        log_p_data = data
    else:
        raise ValueError(f"data must be a toy set name, a log-density callable or None, "
                         f"got {type(data).__name__}")
    pts = None if x_test is None else _points_2d(x_test, "x_test")
    box = as_box(bounds) if bounds is not None else (
        default_box if default_box is not None else _resolve_box(None, pts))
    grid = make_grid(box, n_grid)
    log_f = -energy_on_grid(energy, grid)
    part = _partition(log_f, grid, warn)
    out = {"log_z": part.log_z, "edge_mass": part.edge_mass}
    if log_p_data is not None:
        log_p = _on_grid(log_p_data, grid, "log_p_data")
        out["kl"] = _kl(log_p, log_f, part, grid.cell_area, warn)
    if pts is not None:
        out["nll"] = nll(energy, pts, part)
    return out


__all__ = [
    "DEFAULT_N_GRID",
    "EDGE_MASS_TOL",
    "Grid",
    "PartitionResult",
    "QuadratureWarning",
    "as_box",
    "bounds_from_points",
    "energy_on_grid",
    "evaluate_2d",
    "grid_log_density",
    "kl_divergence",
    "log_density",
    "log_partition",
    "make_grid",
    "nll",
]
