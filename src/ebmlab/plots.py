"""PNG figures for 2-D energies, samples, chains and diagnostics traces.

Every function takes an output ``path`` (parent folders are created), writes a PNG
and returns the path as a :class:`~pathlib.Path`. Figures are built with the
object-oriented matplotlib API on an Agg canvas (never through ``pyplot``), so no
GUI backend is touched, no global figure registry grows, and each figure is
released when the function returns. Points may be torch tensors or numpy arrays.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from ebmlab.evaluate.exact2d import BoundsLike, Box, as_box, bounds_from_points, grid_log_density

ArrayLike = Tensor | np.ndarray
PathLike = str | os.PathLike[str]
DPI = 120


def _np(x: ArrayLike | list | tuple, name: str) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _points(x: ArrayLike, name: str) -> np.ndarray:
    a = _np(x, name)
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2), got {a.shape}")
    return a


def _box(bounds: BoundsLike | None, *points: np.ndarray | None, pad: float = 0.1) -> Box:
    if bounds is not None:
        return as_box(bounds)
    given = [p for p in points if p is not None and len(p)]
    if not given:
        raise ValueError("bounds are required when there are no points to derive them from")
    return bounds_from_points(*given, pad=pad)


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: PathLike) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(out, format="png", dpi=DPI)
    finally:
        fig.clear()
    return out


def _style_2d(ax: Axes, box: Box, title: str | None) -> None:
    (a, b), (c, d) = box
    ax.set_xlim(a, b)
    ax.set_ylim(c, d)
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if title:
        ax.set_title(title)


def _outside(p: np.ndarray, box: Box) -> int:
    (a, b), (c, d) = box
    inside = (p[:, 0] >= a) & (p[:, 0] <= b) & (p[:, 1] >= c) & (p[:, 1] <= d)
    return int((~inside).sum())


def _scatter(ax: Axes, p: np.ndarray, box: Box, label: str, color: str,
             edge: str | None = None) -> None:
    n = len(p)
    size = float(np.clip(3000.0 / max(n, 1), 1.0, 16.0))
    alpha = float(np.clip(300.0 / max(n, 1) ** 0.75, 0.25, 0.9))
    k = _outside(p, box)
    if k:
        label = f"{label} ({k} outside view)"
    ax.scatter(p[:, 0], p[:, 1], s=size, c=color, alpha=alpha, linewidths=0.3 if edge else 0,
               edgecolors=edge, label=f"{label}, n={n}", rasterized=True)


def _legend(ax: Axes, markerscale: float = 2.0) -> None:
    if ax.get_legend_handles_labels()[0]:
        leg = ax.legend(loc="upper right", fontsize="small", markerscale=markerscale,
                        framealpha=0.85)
        for h in leg.legend_handles:
            if h is not None and hasattr(h, "set_alpha"):
                h.set_alpha(1.0)


def plot_density(
    energy: Callable[[Tensor], Tensor],
    path: PathLike,
    bounds: BoundsLike | None = None,
    n_grid: int = 200,
    samples: ArrayLike | None = None,
    data: ArrayLike | None = None,
    title: str | None = None,
) -> Path:
    """Heatmap of the normalised model density ``exp(−U)/Z`` (``Z`` by quadrature on the
    plotted grid), with optional ``data`` and ``samples`` scattered over it."""
    s = None if samples is None else _points(samples, "samples")
    d = None if data is None else _points(data, "data")
    box = _box(bounds, s, d, pad=0.1)
    xs, ys, log_p, part = grid_log_density(energy, box, n_grid)
    dens = np.exp(log_p.numpy())
    fig = _new_figure(6.0, 5.0)
    ax = fig.add_subplot()
    (a, b), (c, e) = box
    im = ax.imshow(dens, origin="lower", extent=(a, b, c, e), cmap="viridis",
                   interpolation="nearest", aspect="equal")
    fig.colorbar(im, ax=ax, label=r"$p_\theta(x) = e^{-U(x)}/Z$", shrink=0.9)
    if d is not None:
        _scatter(ax, d, box, "data", "white", edge="black")
    if s is not None:
        _scatter(ax, s, box, "samples", "tab:red")
    _style_2d(ax, box, title or f"model density (log Z = {part.log_z:.4g})")
    _legend(ax)
    return _save(fig, path)


def plot_samples(
    samples: ArrayLike,
    path: PathLike,
    data: ArrayLike | None = None,
    bounds: BoundsLike | None = None,
    title: str | None = None,
) -> Path:
    """Scatter of ``samples`` over ``data`` (grey)."""
    s = _points(samples, "samples")
    d = None if data is None else _points(data, "data")
    box = _box(bounds, s, d, pad=0.1)
    fig = _new_figure(5.5, 5.0)
    ax = fig.add_subplot()
    if d is not None:
        _scatter(ax, d, box, "data", "0.55")
    _scatter(ax, s, box, "samples", "tab:blue")
    ax.grid(True, lw=0.3, alpha=0.5)
    _style_2d(ax, box, title or "samples")
    _legend(ax)
    return _save(fig, path)


def plot_trajectories(
    traj: ArrayLike,
    path: PathLike,
    energy: Callable[[Tensor], Tensor] | None = None,
    bounds: BoundsLike | None = None,
    n_show: int = 10,
    title: str | None = None,
    n_grid: int = 150,
) -> Path:
    """Paths of the first ``n_show`` chains of ``traj`` ``(T, B, 2)`` (○ start, ★ end),
    over filled contours of the model log-density when ``energy`` is given."""
    t = _np(traj, "traj")
    if t.ndim != 3 or t.shape[2] != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"traj must have shape (T >= 1, B >= 1, 2), got {t.shape}")
    if isinstance(n_show, bool) or not isinstance(n_show, int) or n_show < 1:
        raise ValueError(f"n_show must be an integer >= 1, got {n_show!r}")
    shown = t[:, :n_show]
    box = _box(bounds, shown.reshape(-1, 2), pad=0.1)
    fig = _new_figure(6.0, 5.0)
    ax = fig.add_subplot()
    if energy is not None:
        xs, ys, log_p, _ = grid_log_density(energy, box, n_grid)
        lp = log_p.numpy()
        finite = lp[np.isfinite(lp)]
        top = math.ceil(float(finite.max())) if finite.size else 0.0
        levels = np.linspace(top - 12.0, top, 13)
        cs = ax.contourf(xs.numpy(), ys.numpy(), np.maximum(lp, top - 12.0), levels=levels,
                         cmap="Greys", alpha=0.8)
        fig.colorbar(cs, ax=ax, label=r"$\log p_\theta(x)$", shrink=0.9)
    colors = [f"C{i % 10}" for i in range(shown.shape[1])]
    for i in range(shown.shape[1]):
        path_i = shown[:, i]
        ax.plot(path_i[:, 0], path_i[:, 1], "-", lw=0.8, alpha=0.85, color=colors[i])
        ax.plot(*path_i[0], "o", ms=4, color=colors[i], mec="black", mew=0.5)
        ax.plot(*path_i[-1], "*", ms=8, color=colors[i], mec="black", mew=0.5)
    ax.plot([], [], "o", ms=4, color="0.5", mec="black", label="start")
    ax.plot([], [], "*", ms=8, color="0.5", mec="black", label="end")
    _style_2d(ax, box, title or f"{shown.shape[1]} of {t.shape[1]} chains, {t.shape[0]} states")
    _legend(ax, markerscale=1.0)
    return _save(fig, path)


def plot_traces(
    traces: Mapping[str, ArrayLike],
    path: PathLike,
    title: str | None = None,
) -> Path:
    """One panel per named trace (e.g. energy, grad norm, acceptance) against the step.

    A 1-D trace is drawn as is; a 2-D ``(T, B)`` trace as the mean over chains with a
    10–90% band.
    """
    if not traces:
        raise ValueError("traces is empty")
    arrays = {}
    for name, v in traces.items():
        a = _np(v, name)
        if a.ndim not in (1, 2) or a.shape[0] == 0:
            raise ValueError(f"trace {name!r} must have shape (T,) or (T, B), got {a.shape}")
        arrays[name] = a
    n = len(arrays)
    cols = 1 if n <= 3 else 2
    rows = math.ceil(n / cols)
    fig = _new_figure(5.0 * cols, 2.0 * rows + 0.4)
    axes = fig.subplots(rows, cols, sharex=True, squeeze=False).reshape(-1)
    for ax, (name, a) in zip(axes, arrays.items(), strict=False):
        steps = np.arange(a.shape[0])
        if a.ndim == 1:
            ax.plot(steps, a, lw=0.9, color="tab:blue")
        else:
            with np.errstate(all="ignore"):
                lo, hi = np.nanquantile(a, [0.1, 0.9], axis=1)
                mean = np.nanmean(a, axis=1)
            ax.fill_between(steps, lo, hi, color="tab:blue", alpha=0.25, lw=0,
                            label="10–90% of chains")
            ax.plot(steps, mean, lw=0.9, color="tab:blue", label="mean")
            ax.legend(fontsize="x-small", loc="best")
        ax.set_ylabel(name)
        ax.grid(True, lw=0.3, alpha=0.5)
    for ax in axes[n:]:
        ax.set_visible(False)
    for ax in axes[max(0, n - cols):n]:
        ax.set_xlabel("step")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


__all__ = ["plot_density", "plot_image_grid", "plot_samples", "plot_traces", "plot_trajectories"]


def _correlation(a: np.ndarray, b: np.ndarray, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample cross-correlation ``corr(a_t, b_{t+k})`` for ``k = −max_lag..max_lag``."""
    a = (a - a.mean()) / (a.std() or 1.0)
    b = (b - b.mean()) / (b.std() or 1.0)
    n = len(a)
    lags = np.arange(-max_lag, max_lag + 1)
    vals = np.array([np.mean(a[max(0, -k):n - max(0, k)] * b[max(0, k):n - max(0, -k)])
                     for k in lags])
    return lags, vals


def plot_diagnosis(records: list[dict[str, float]], path: PathLike,
                   title: str | None = None) -> Path:
    """The Anatomy paper's learning diagnosis from logged iterations.

    Top: ``d_st = mean U(x⁺) − mean U(x⁻)`` with the zero line (stable learning
    oscillates around 0) and ``r_t`` (average Langevin gradient magnitude, which
    settles at a constant); bottom: auto-correlations of both and their
    cross-correlation.
    """
    rows = [r for r in records if "d_st" in r and "r_t" in r]
    if len(rows) < 2:
        raise ValueError("plot_diagnosis needs at least 2 logged iterations with d_st and r_t")
    it = np.array([r["iteration"] for r in rows], dtype=float)
    d = np.array([r["d_st"] for r in rows], dtype=float)
    rt = np.array([r["r_t"] for r in rows], dtype=float)
    fig = _new_figure(10.0, 6.5)
    axes = fig.subplots(2, 3)
    ax = axes[0, 0]
    ax.plot(it, d, lw=0.8, color="tab:blue")
    ax.axhline(0.0, color="black", lw=0.8, ls="--")
    ax.set(xlabel="iteration", ylabel="d_st", title="energy difference d_st")
    ax = axes[0, 1]
    ax.plot(it, rt, lw=0.8, color="tab:orange")
    ax.set(xlabel="iteration", ylabel="r_t", title="Langevin gradient r_t")
    ax = axes[0, 2]
    ax.hist(d, bins=min(40, max(5, len(d) // 5)), color="tab:blue", alpha=0.8)
    ax.axvline(0.0, color="black", lw=0.8, ls="--")
    ax.set(xlabel="d_st", ylabel="count", title=f"d_st: mean {d.mean():.3g}")
    max_lag = max(1, min(50, len(d) // 4))
    for ax, (a, b, name) in zip(axes[1], ((d, d, "auto-corr. d_st"), (rt, rt, "auto-corr. r_t"),
                                          (d, rt, "cross-corr. d_st, r_t")), strict=True):
        lags, vals = _correlation(a, b, max_lag)
        ax.bar(lags, vals, width=0.8, color="tab:gray")
        ax.axhline(0.0, color="black", lw=0.6)
        ax.set(xlabel="lag (logged iterations)", ylim=(-1.05, 1.05), title=name)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_longrun(records: list[dict], path: PathLike) -> Path:
    """Long-run check over training: sample quality (KDE-KL, else FID for images, else
    MMD²) and energy, by start."""
    if not records:
        raise ValueError("no long-run records to plot")

    def has(key: str) -> bool:
        return any(isinstance(r.get(o), dict) and key in r[o] for r in records
                   for o in ("data", "model"))

    metric = "kde_kl" if has("kde_kl") else "fid" if has("fid") else "mmd2"
    fig = _new_figure(9.0, 3.6)
    ax_q, ax_e = fig.subplots(1, 2)
    for origin, color in (("data", "tab:blue"), ("model", "tab:red")):
        pts = [(r["iteration"], r[origin]) for r in records
               if isinstance(r.get(origin), dict) and metric in r[origin]]
        if not pts:
            continue
        its = [p[0] for p in pts]
        label = "from data" if origin == "data" else "from the model's own start"
        ax_q.plot(its, [p[1][metric] for p in pts], "o-", color=color, label=label)
        if all("energy" in p[1] for p in pts):
            ax_e.plot(its, [p[1]["energy"] for p in pts], "o-", color=color, label=label)
    ref = [(r["iteration"], r["kde_kl_reference"]) for r in records if "kde_kl_reference" in r]
    if metric == "kde_kl" and ref:
        ax_q.plot([p[0] for p in ref], [p[1] for p in ref], "--", color="gray",
                  label="held-out data (KDE bias)")
    steps = records[-1].get("steps", "?")
    ax_q.set(xlabel="iteration", ylabel=metric,
             title=f"long-run ({steps} steps) sample quality")
    ax_e.set(xlabel="iteration", ylabel="mean U", title="long-run mean energy")
    for ax in (ax_q, ax_e):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_quality(records: list[dict], path: PathLike, title: str | None = None) -> Path:
    """FID and KID (± sd over subsets) of the model's samples over training."""
    rows = [r for r in records if "fid" in r and "kid" in r]
    if not rows:
        raise ValueError("no FID / KID records to plot")
    it = np.array([r["iteration"] for r in rows], dtype=float)
    fig = _new_figure(9.0, 3.6)
    ax_f, ax_k = fig.subplots(1, 2)
    ax_f.plot(it, [r["fid"] for r in rows], "o-", color="tab:blue")
    kid = np.array([r["kid"] for r in rows], dtype=float)
    sd = np.array([r.get("kid_sd", 0.0) for r in rows], dtype=float)
    ax_k.errorbar(it, kid, yerr=sd, fmt="o-", color="tab:red", capsize=2)
    n = rows[-1].get("quality_samples", "?")
    ax_f.set(xlabel="iteration", ylabel="FID", title=f"FID ({n} samples vs test split)")
    ax_k.set(xlabel="iteration", ylabel="KID", title="KID (mean ± sd over subsets)")
    for ax in (ax_f, ax_k):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_image_grid(
    images: ArrayLike,
    path: PathLike | None = None,
    nrow: int | None = None,
    title: str | None = None,
    *,
    image_shape: tuple[int, ...] | None = None,
    value_range: tuple[float, float] | None = None,
    cmap: str = "gray",
    padding: int = 1,
) -> Path | Figure:
    """A batch of images laid out in a grid of ``nrow`` images per row (default ≈ √N).

    ``images`` is ``(N, C, H, W)`` with ``C`` 1 (grey, ``cmap``) or 3 (RGB), ``(N, H, W)``,
    or flat ``(N, D)`` with ``image_shape`` ``(H, W)`` or ``(C, H, W)`` (square grey when
    omitted and ``D`` is a perfect square). Values are mapped linearly from
    ``value_range`` (default: the batch's finite min / max) to ``[0, 1]`` and clipped;
    images are separated by ``padding`` white pixels. Writes a PNG to ``path`` and returns
    the path, or, with ``path=None``, returns the Figure without saving.
    """
    a = _np(images, "images")
    if a.ndim == 2:
        if image_shape is None:
            side = math.isqrt(a.shape[1])
            if side * side != a.shape[1] or side == 0:
                raise ValueError(
                    f"images of shape {a.shape} are flat: pass image_shape=(H, W) or (C, H, W)"
                )
            image_shape = (side, side)
        if math.prod(image_shape) != a.shape[1]:
            raise ValueError(f"image_shape {tuple(image_shape)} does not hold {a.shape[1]} values")
        a = a.reshape(a.shape[0], *image_shape)
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4 or a.shape[1] not in (1, 3) or 0 in a.shape:
        raise ValueError(
            f"images must have shape (N, C, H, W) with C 1 or 3, (N, H, W) or (N, D); got {a.shape}"
        )
    if nrow is not None and (isinstance(nrow, bool) or not isinstance(nrow, int) or nrow < 1):
        raise ValueError(f"nrow must be an integer >= 1, got {nrow!r}")
    n, c, h, w = a.shape
    if value_range is None:
        finite = a[np.isfinite(a)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    else:
        lo, hi = (float(v) for v in value_range)
    a = np.clip((a - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
    cols = min(n, nrow or math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    p = max(int(padding), 0)
    grid = np.ones((rows * (h + p) + p, cols * (w + p) + p, c))
    for i in range(n):
        r, q = divmod(i, cols)
        top, left = p + r * (h + p), p + q * (w + p)
        grid[top:top + h, left:left + w] = a[i].transpose(1, 2, 0)
    scale = min(10.0 / grid.shape[1], 10.0 / grid.shape[0], 0.25)  # inches per pixel
    fig = _new_figure(max(grid.shape[1] * scale, 2.0), max(grid.shape[0] * scale, 2.0) + 0.3)
    ax = fig.add_subplot()
    if c == 1:
        ax.imshow(grid[..., 0], cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title or f"{n} images, range [{lo:.3g}, {hi:.3g}]", fontsize="small")
    return fig if path is None else _save(fig, path)
