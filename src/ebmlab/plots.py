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
from typing import overload

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


MAX_ASPECT = 2.5  # a 2-D box longer than this (either way) is drawn with unequal axes


def _figure_2d(box: Box, colorbar: bool) -> tuple[Figure, Axes, bool]:
    """A figure whose axes have the box's shape: equal scales when the box's height/width
    ratio is within [1/MAX_ASPECT, MAX_ASPECT], else the ratio clipped to that range and
    unequal scales (a 6:1 box would be a thin strip). Returns ``(fig, ax, equal)``."""
    (a, b), (c, d) = box
    ratio = (d - c) / (b - a)
    shown = min(max(ratio, 1 / MAX_ASPECT), MAX_ASPECT)
    side = 4.6  # inches of the longer axis
    w, h = (side, side * shown) if shown <= 1 else (side / shown, side)
    fig = _new_figure(w + (1.9 if colorbar else 0.9), h + 0.9)
    return fig, fig.add_subplot(), math.isclose(shown, ratio)


def _style_2d(ax: Axes, box: Box, title: str | None, equal: bool = True) -> None:
    (a, b), (c, d) = box
    ax.set_xlim(a, b)
    ax.set_ylim(c, d)
    ax.set_aspect("equal" if equal else "auto")
    ax.set_xlabel("$x_1$" if equal else "$x_1$ (axes not to the same scale)")
    ax.set_ylabel("$x_2$")
    if title:
        ax.set_title(title, fontsize="medium" if len(title) < 60 else "small")


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
    fig, ax, equal = _figure_2d(box, colorbar=True)
    (a, b), (c, e) = box
    im = ax.imshow(dens, origin="lower", extent=(a, b, c, e), cmap="viridis",
                   interpolation="nearest", aspect="equal" if equal else "auto")
    fig.colorbar(im, ax=ax, label=r"$p_\theta(x) = e^{-U(x)}/Z$")
    if d is not None:
        _scatter(ax, d, box, "data", "white", edge="black")
    if s is not None:
        _scatter(ax, s, box, "samples", "tab:red")
    _style_2d(ax, box, title or f"model density (log Z = {part.log_z:.4g})", equal)
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
    fig, ax, equal = _figure_2d(box, colorbar=False)
    if d is not None:
        _scatter(ax, d, box, "data", "0.55")
    _scatter(ax, s, box, "samples", "tab:blue")
    ax.grid(True, lw=0.3, alpha=0.5)
    _style_2d(ax, box, title or "samples", equal)
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
    fig, ax, equal = _figure_2d(box, colorbar=energy is not None)
    if energy is not None:
        xs, ys, log_p, _ = grid_log_density(energy, box, n_grid)
        lp = log_p.numpy()
        finite = lp[np.isfinite(lp)]
        top = math.ceil(float(finite.max())) if finite.size else 0.0
        levels = np.linspace(top - 12.0, top, 13)
        cs = ax.contourf(xs.numpy(), ys.numpy(), np.maximum(lp, top - 12.0), levels=levels,
                         cmap="Greys", alpha=0.8)
        fig.colorbar(cs, ax=ax, label=r"$\log p_\theta(x)$")
    colors = [f"C{i % 10}" for i in range(shown.shape[1])]
    for i in range(shown.shape[1]):
        path_i = shown[:, i]
        ax.plot(path_i[:, 0], path_i[:, 1], "-", lw=0.8, alpha=0.85, color=colors[i])
        ax.plot(*path_i[0], "o", ms=4, color=colors[i], mec="black", mew=0.5)
        ax.plot(*path_i[-1], "*", ms=8, color=colors[i], mec="black", mew=0.5)
    ax.plot([], [], "o", ms=4, color="0.5", mec="black", label="start")
    ax.plot([], [], "*", ms=8, color="0.5", mec="black", label="end")
    _style_2d(ax, box, title or f"{shown.shape[1]} of {t.shape[1]} chains, {t.shape[0]} states",
              equal)
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
    sa, sb = float(a.std()), float(b.std())
    a = (a - a.mean()) / (sa if sa > 0 else 1.0)
    b = (b - b.mean()) / (sb if sb > 0 else 1.0)
    n = len(a)
    lags = range(-max_lag, max_lag + 1)
    vals = np.array([np.mean(a[max(0, -k):n - max(0, k)] * b[max(0, k):n - max(0, -k)])
                     for k in lags])
    return np.array(lags), vals


def _lag_spacing(iterations: np.ndarray) -> float:
    """Iterations between logged records (their median spacing; 1 if unknown)."""
    gaps = np.diff(iterations)
    gaps = gaps[gaps > 0]
    return float(np.median(gaps)) if gaps.size else 1.0


def _correlation_panel(ax: Axes, lags: np.ndarray, vals: np.ndarray, n: int, spacing: float,
                       title: str) -> None:
    """Bars at lags in iterations, the white-noise 95 % band ±1.96/√n, and a y-range that
    fits the bars and the band (not a fixed [−1, 1] that flattens small correlations)."""
    band = 1.96 / math.sqrt(n)
    ax.axhspan(-band, band, color="tab:blue", alpha=0.12, lw=0, label="±1.96/√n (no correlation)")
    ax.bar(lags * spacing, vals, width=0.8 * spacing, color="tab:gray")
    ax.axhline(0.0, color="black", lw=0.6)
    low, high = min(float(vals.min()), -band), max(float(vals.max()), band)
    pad = 0.12 * (high - low)
    ax.set(xlabel="lag (iterations)", ylim=(low - pad, high + pad), title=title)
    ax.legend(fontsize="x-small", loc="upper right")


def plot_diagnosis(records: list[dict[str, float]], path: PathLike,
                   title: str | None = None, sampler: str | None = None) -> Path:
    """The Anatomy paper's learning diagnosis from logged iterations.

    Top: ``d_st = mean U(x⁺) − mean U(x⁻)`` with the zero line (stable learning
    oscillates around 0) and ``r_t = s · mean ‖∇U‖`` along the negatives' chains
    (Anatomy's average gradient term, which settles at a constant; ``sampler`` names the
    sampler, Langevin in the paper); bottom: the auto-correlations of both (lags ≥ 1, in
    iterations) and their cross-correlation, each scaled to its values.
    """
    rows = [r for r in records if "d_st" in r and "r_t" in r]
    if len(rows) < 2:
        raise ValueError("plot_diagnosis needs at least 2 logged iterations with d_st and r_t")
    it = np.array([r["iteration"] for r in rows], dtype=float)
    d = np.array([r["d_st"] for r in rows], dtype=float)
    rt = np.array([r["r_t"] for r in rows], dtype=float)
    spacing = _lag_spacing(it)
    fig = _new_figure(10.0, 6.5)
    axes = fig.subplots(2, 3)
    ax = axes[0, 0]
    ax.plot(it, d, lw=0.8, color="tab:blue")
    ax.axhline(0.0, color="black", lw=0.8, ls="--")
    ax.set(xlabel="iteration", ylabel="d_st", title="energy difference d_st")
    ax = axes[0, 1]
    ax.plot(it, rt, lw=0.8, color="tab:orange")
    who = f"{sampler} negatives" if sampler else "negatives"
    ax.set(xlabel="iteration", ylabel=r"$r_t = s\cdot$mean$\|\nabla U\|$",
           title=f"gradient term r_t ({who})")
    ax = axes[0, 2]
    ax.hist(d, bins=min(40, max(5, len(d) // 5)), color="tab:blue", alpha=0.8)
    ax.axvline(0.0, color="black", lw=0.8, ls="--")
    ax.set(xlabel="d_st", ylabel="count", title=f"d_st: mean {d.mean():.3g}, sd {d.std():.3g}")
    max_lag = max(1, min(50, len(d) // 4))
    for ax, (a, b, name) in zip(axes[1], ((d, d, "auto-corr. d_st"), (rt, rt, "auto-corr. r_t"),
                                          (d, rt, "cross-corr. d_st, r_t")), strict=True):
        lags, vals = _correlation(a, b, max_lag)
        if a is b:  # symmetric, and 1 at lag 0 by definition: lags 1..max_lag
            keep = lags >= 1
            lags, vals, name = lags[keep], vals[keep], f"{name} (lag 0 = 1)"
        _correlation_panel(ax, lags, vals, len(a), spacing, name)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


LONGRUN_STARTS = (("data", "from held-out data", "tab:blue"),
                  ("model", "from the model's own start", "tab:red"))


def plot_longrun(records: list[dict], path: PathLike) -> Path:
    """The long-run check: sample quality (KDE-KL to the data density, FID for images, or
    MMD² to held-out data) and mean energy of chains ``longrun_factor``× longer than in
    training, by start, next to what held-out data score (the KDE's own bias; the data's
    mean energy).

    One check (the default, at the end) is drawn as bars; checks at several iterations
    (``train.longrun_every``) as curves over training. The reference is always inside the
    y-range; a logarithmic axis is used when values span more than 30×."""
    if not records:
        raise ValueError("no long-run records to plot")
    entries = [r[o] for r in records for o in ("data", "model") if isinstance(r.get(o), dict)]
    metric = "kde_kl" if any("kde_kl" in e for e in entries) else \
        "fid" if any("fid" in e for e in entries) else "mmd2"
    quality = {"kde_kl": "KDE-KL(p_data ‖ samples) (nats)",
               "fid": "FID to the test split (classifier features)",
               "mmd2": "MMD² to held-out data (≈ 0 for data)"}
    panels = ((metric, "kde_kl_reference" if metric == "kde_kl" else None, quality[metric],
               "sample quality (lower is better)"),
              ("energy", "energy_reference", "mean U (standardised units)", "mean energy"))
    steps = records[-1].get("steps", "?")
    fig = _new_figure(9.5, 3.8)
    axes = fig.subplots(1, 2)
    single = len({r["iteration"] for r in records}) == 1
    for ax, (key, ref_key, ylabel, name) in zip(axes, panels, strict=True):
        shown: list[float] = []
        if single:
            r = records[-1]
            labels, values, colors = [], [], []
            if ref_key and ref_key in r:
                labels.append("held-out data\n(reference)")
                values.append(float(r[ref_key]))
                colors.append("0.6")
            for origin, label, color in LONGRUN_STARTS:
                entry = r.get(origin)
                if isinstance(entry, dict) and key in entry:
                    labels.append(label.replace("from ", "from\n", 1))
                    values.append(float(entry[key]))
                    colors.append(color)
                elif isinstance(entry, dict) and "error" in entry:
                    labels.append(label.replace("from ", "from\n", 1) + "\n(failed)")
                    values.append(float("nan"))
                    colors.append(color)
            xs = np.arange(len(values))
            ax.bar(xs, np.nan_to_num(values), color=colors, width=0.6)
            for x, v in zip(xs, values, strict=True):
                ax.annotate(f"{v:.3g}", (x, 0 if not math.isfinite(v) else v),
                            ha="center", va="bottom", fontsize="small",
                            xytext=(0, 2), textcoords="offset points")
            ax.set_xticks(xs, labels, fontsize="small")
            ax.axhline(0.0, color="black", lw=0.6)
            shown = [v for v in values if math.isfinite(v)]
            ax.set_title(f"{name}, iteration {r['iteration']}", fontsize="medium")
        else:
            for origin, label, color in LONGRUN_STARTS:
                pts = [(r["iteration"], r[origin][key]) for r in records
                       if isinstance(r.get(origin), dict) and key in r[origin]]
                if pts:
                    ax.plot(*zip(*pts, strict=True), "o-", color=color, label=label, ms=4)
                    shown += [p[1] for p in pts]
            ref = [(r["iteration"], r[ref_key]) for r in records if ref_key and ref_key in r]
            if ref:
                ax.plot(*zip(*ref, strict=True), "--", color="0.4",
                        label="held-out data (reference)")
                shown += [p[1] for p in ref]
            ax.set_xlabel("iteration")
            ax.set_title(name, fontsize="medium")
            if shown:
                ax.legend(fontsize="x-small")
        if key == "energy" and not shown:  # a model without a density (e.g. a GEBM)
            ax.text(0.5, 0.5, "no energy U(x): the model has no density", ha="center",
                    va="center", transform=ax.transAxes)
        finite = [v for v in shown if math.isfinite(v)]
        if finite and min(finite) > 0 and max(finite) / min(finite) > 30:
            ax.set_yscale("log")
        elif finite:
            low, high = min(min(finite), 0.0), max(max(finite), 0.0)
            pad = 0.15 * (high - low or 1.0)
            ax.set_ylim(low - (pad if low < 0 else 0), high + pad)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"long-run check: chains of {steps} steps", fontsize="medium")
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


@overload
def plot_image_grid(images: ArrayLike, path: None = None, nrow: int | None = None,
                    title: str | None = None, *, image_shape: tuple[int, ...] | None = None,
                    value_range: tuple[float, float] | None = None, cmap: str = "gray",
                    padding: int = 1) -> Figure: ...


@overload
def plot_image_grid(images: ArrayLike, path: PathLike, nrow: int | None = None,
                    title: str | None = None, *, image_shape: tuple[int, ...] | None = None,
                    value_range: tuple[float, float] | None = None, cmap: str = "gray",
                    padding: int = 1) -> Path: ...


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
