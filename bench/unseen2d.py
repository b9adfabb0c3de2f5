"""2-D densities of the kinds users bring, with exact log-densities and samplers.

Each density is an object with

* ``name``: a short identifier;
* ``log_prob(x)``: the exact normalised log-density, ``(B, 2) -> (B,)``, in the dtype
  of ``x`` (computed in float64);
* ``sample(n, seed)``: ``n`` exact draws as a float64 ``(n, 2)`` tensor;
* ``bounds``: a generous evaluation box ``((lo_x, hi_x), (lo_y, hi_y))`` (the data's
  extent plus a margin) that holds all but a negligible share of the mass;
* ``kind``: ``"banana"``, ``"ring"`` or ``"curve"``.

The kinds (all on a scale of about ±4):

* banana — ``x₁ ~ N(0, s₁²)``, ``x₂ | x₁ ~ N(b·x₁² + c, s₂²)``: a curved density whose
  exact log-density is the product of the two Gaussians;
* ring — an equal-weight mixture of thin anisotropic Gaussians on a circle, each
  elongated along the circle (tangential sd ≫ radial sd);
* curve — an equal-weight mixture of many small isotropic Gaussians (sd ≈ 0.12) whose
  means lie at equal arc-length steps along a curve (a spiral, a sine wave, an S).

Only torch and numpy are needed. ``write_npy(density, path, n=20000, seed=0)`` writes
the kind of file ``ebmlab train --set data.name=npy --set data.path=FILE`` reads.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

Box = tuple[tuple[float, float], tuple[float, float]]
LOG_2PI = math.log(2 * math.pi)


# -- banana -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Banana:
    """Banana: ``x₁ ~ N(0, s₁²)``, ``x₂ | x₁ ~ N(b·x₁² + c, s₂²)``.

    ``log p(x) = log N(x₁; 0, s₁²) + log N(x₂; b·x₁² + c, s₂²)`` exactly. With
    ``transpose`` the roles of the coordinates are swapped (the banana opens sideways).
    """

    name: str
    s1: float
    b: float
    c: float
    s2: float
    transpose: bool = False
    kind: str = "banana"

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.to(torch.float64)
        return (x[:, 1], x[:, 0]) if self.transpose else (x[:, 0], x[:, 1])

    def log_prob(self, x: Tensor) -> Tensor:
        x1, x2 = self._split(x)
        lp1 = -0.5 * (x1 / self.s1) ** 2 - math.log(self.s1) - 0.5 * LOG_2PI
        lp2 = -0.5 * ((x2 - self.b * x1**2 - self.c) / self.s2) ** 2 - math.log(self.s2) \
            - 0.5 * LOG_2PI
        return (lp1 + lp2).to(x.dtype)

    def sample(self, n: int, seed: int = 0) -> Tensor:
        rng = np.random.default_rng(seed)
        x1 = rng.normal(0.0, self.s1, n)
        x2 = self.b * x1**2 + self.c + rng.normal(0.0, self.s2, n)
        pts = np.stack((x2, x1) if self.transpose else (x1, x2), axis=1)
        return torch.from_numpy(pts)

    @property
    def bounds(self) -> Box:
        # x₁ within ±5 s₁ (mass outside ≈ 6e-7); x₂ from the parabola's range ± 6 s₂.
        a = 5.0 * self.s1
        ends = sorted((self.c, self.b * a * a + self.c))
        box = ((-a, a), (ends[0] - 6 * self.s2, ends[1] + 6 * self.s2))
        return (box[1], box[0]) if self.transpose else box


# -- Gaussian mixtures (rings and curves) -----------------------------------------------------
@dataclass(frozen=True)
class Mixture:
    """Equal-weight mixture of ``K`` Gaussians with means ``μₖ``, principal directions
    ``tₖ`` (unit) and ``nₖ ⊥ tₖ``, sds ``σₜ`` along ``tₖ`` and ``σₙ`` along ``nₖ``:

    ``log p(x) = logsumexp_k [ −½((x−μₖ)·tₖ/σₜ)² − ½((x−μₖ)·nₖ/σₙ)² − log(2π σₜ σₙ) ] − log K``.
    """

    name: str
    kind: str
    means: np.ndarray  # (K, 2)
    tangents: np.ndarray  # (K, 2), unit vectors
    sd_t: float
    sd_n: float
    doc: str = ""
    _bounds: Box | None = field(default=None, repr=False)

    @property
    def n_components(self) -> int:
        return int(self.means.shape[0])

    def log_prob(self, x: Tensor) -> Tensor:
        xd = x.to(torch.float64)
        mu = torch.as_tensor(self.means, dtype=torch.float64, device=x.device)
        t = torch.as_tensor(self.tangents, dtype=torch.float64, device=x.device)
        nrm = torch.stack((-t[:, 1], t[:, 0]), dim=1)
        out = []
        for i in range(0, xd.shape[0], 8192):  # (chunk, K) at a time
            d = xd[i:i + 8192, None, :] - mu[None]
            a = (d * t[None]).sum(-1) / self.sd_t
            b = (d * nrm[None]).sum(-1) / self.sd_n
            out.append(torch.logsumexp(-0.5 * (a * a + b * b), dim=1))
        lp = torch.cat(out) if out else xd.new_zeros(0)
        lp = lp - math.log(self.n_components) - LOG_2PI - math.log(self.sd_t * self.sd_n)
        return lp.to(x.dtype)

    def sample(self, n: int, seed: int = 0) -> Tensor:
        rng = np.random.default_rng(seed)
        k = rng.integers(0, self.n_components, n)
        t = self.tangents[k]
        nrm = np.stack((-t[:, 1], t[:, 0]), axis=1)
        z = rng.normal(size=(n, 2))
        pts = self.means[k] + z[:, :1] * self.sd_t * t + z[:, 1:] * self.sd_n * nrm
        return torch.from_numpy(pts)

    @property
    def bounds(self) -> Box:
        if self._bounds is not None:
            return self._bounds
        margin = 7 * max(self.sd_t, self.sd_n) + 0.5
        lo, hi = self.means.min(0) - margin, self.means.max(0) + margin
        return ((float(lo[0]), float(hi[0])), (float(lo[1]), float(hi[1])))


def ring(name: str, k: int, radius: float, sd_tangential: float, sd_radial: float,
         phase: float = 0.0) -> Mixture:
    """Ring: ``K`` components at ``μₖ = r (cos θₖ, sin θₖ)``, ``θₖ = phase + 2πk/K``, each
    with sd ``σₜ`` along the circle's tangent ``(−sin θₖ, cos θₖ)`` and ``σₙ`` radially."""
    th = phase + 2 * math.pi * np.arange(k) / k
    means = radius * np.stack((np.cos(th), np.sin(th)), axis=1)
    tangents = np.stack((-np.sin(th), np.cos(th)), axis=1)
    return Mixture(name, "ring", means, tangents, sd_tangential, sd_radial)


def along_curve(name: str, curve: Callable[[np.ndarray], np.ndarray], k: int,
                sd: float = 0.12, n_fine: int = 20001) -> Mixture:
    """Curve: ``K`` isotropic components of sd ``σ`` whose means sit at equal arc-length
    steps along ``curve(u)``, ``u ∈ [0, 1]`` (end points included)."""
    u = np.linspace(0.0, 1.0, n_fine)
    pts = curve(u)
    s = np.concatenate(([0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))))
    targets = np.linspace(0.0, s[-1], k)
    means = np.stack((np.interp(targets, s, pts[:, 0]), np.interp(targets, s, pts[:, 1])), 1)
    tangents = np.tile(np.array([[1.0, 0.0]]), (k, 1))  # isotropic: any frame
    return Mixture(name, "curve", means, tangents, sd, sd)


def _spiral(u: np.ndarray) -> np.ndarray:
    th = 0.6 + 3.4 * math.pi * u  # 1.7 turns, r from 0.6 to 3.6
    r = 0.6 + 3.0 * u
    return np.stack((r * np.cos(th), r * np.sin(th)), axis=1)


def _sine(u: np.ndarray) -> np.ndarray:
    x = -3.6 + 7.2 * u
    return np.stack((x, 2.2 * np.sin(1.35 * x)), axis=1)


def _letter_s(u: np.ndarray) -> np.ndarray:
    # An "S": the top arc turns counter-clockwise around (0, r) from 18° to 270° (the
    # middle point (0, 0)), the bottom arc clockwise around (0, −r) from 90° to −162°.
    r = 1.7
    out = np.empty((len(u), 2))
    top = u < 0.5
    a = 0.1 * np.pi + 1.4 * np.pi * (u[top] / 0.5)
    out[top] = np.stack((r * np.cos(a), r + r * np.sin(a)), axis=1)
    b = 0.5 * np.pi - 1.4 * np.pi * ((u[~top] - 0.5) / 0.5)
    out[~top] = np.stack((r * np.cos(b), -r + r * np.sin(b)), axis=1)
    return out


def _lemniscate(u: np.ndarray) -> np.ndarray:
    # Bernoulli's lemniscate (a figure eight), half-width 3.8: it crosses itself at 0.
    t = 2 * np.pi * u
    den = 1 + np.sin(t) ** 2
    return np.stack((3.8 * np.cos(t) / den, 3.8 * np.sin(t) * np.cos(t) / den), axis=1)


# -- the set -----------------------------------------------------------------------------------
def densities() -> dict[str, Banana | Mixture]:
    """All densities by name. ``TUNE`` and ``HELD_OUT`` split them by role."""
    items: list[Banana | Mixture] = [
        Banana("banana_wide", s1=1.25, b=0.35, c=-2.0, s2=0.35),
        Banana("banana_tight", s1=1.0, b=-0.6, c=2.2, s2=0.22, transpose=True),
        ring("ring8", k=8, radius=3.0, sd_tangential=0.5, sd_radial=0.1),
        ring("ring11", k=11, radius=2.8, sd_tangential=0.45, sd_radial=0.08, phase=0.3),
        along_curve("spiral", _spiral, k=150, sd=0.12),
        along_curve("sine", _sine, k=90, sd=0.12),
        along_curve("letter_s", _letter_s, k=110, sd=0.12),
        ring("ring6", k=6, radius=2.5, sd_tangential=0.6, sd_radial=0.12, phase=0.2),
        along_curve("lemniscate", _lemniscate, k=120, sd=0.12),
    ]
    return {d.name: d for d in items}


TUNE = ("banana_wide", "ring8", "spiral")
HELD_OUT = ("banana_tight", "ring11", "ring6", "sine", "letter_s", "lemniscate")


def write_npy(density: Banana | Mixture, path: str | Path, n: int = 20000,
              seed: int = 0) -> Path:
    """Write ``n`` exact draws of ``density`` (seed ``seed``) as a float64 ``(n, 2)`` .npy."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, density.sample(n, seed).numpy())
    return path


def check(n: int = 400) -> None:
    """Self-check: each density integrates to 1 on its box (midpoint rule) and its samples
    have the same mean log-density as the quadrature's ``E_p[log p]``."""
    for d in densities().values():
        (a, b), (c, e) = d.bounds
        xs = a + (b - a) * (np.arange(n) + 0.5) / n
        ys = c + (e - c) * (np.arange(n) + 0.5) / n
        gx, gy = np.meshgrid(xs, ys)
        g = torch.from_numpy(np.stack((gx.ravel(), gy.ravel()), 1))
        lp = d.log_prob(g)
        area = (b - a) * (e - c) / n**2
        mass = float(lp.exp().sum()) * area
        neg_h = float((lp.exp() * lp).sum()) * area
        mc = float(d.log_prob(d.sample(20000, 1)).mean())
        print(f"{d.name:13s} mass {mass:.6f}  E log p: grid {neg_h:.4f}  MC {mc:.4f}  "
              f"box {tuple(tuple(round(v, 2) for v in ax) for ax in d.bounds)}")


if __name__ == "__main__":
    check()
