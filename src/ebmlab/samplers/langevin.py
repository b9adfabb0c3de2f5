"""Unadjusted Langevin (ULA) and anisotropic Langevin (AniLA).

Two ways of writing the same update, both supported:

* the papers' δ-form (Anatomy, Eq. for X_{ℓ+1}): ``x ← x − (δ²/2)·∇U(x) + δ·ξ``;
* the step form used here: ``x ← x − s·∇U(x) + √(2s)·ξ`` with ``s = δ²/2``
  (``Langevin.from_delta(δ)`` builds it from δ).

Both sample ``exp(−U)`` as ``s → 0``. Short-run EBM code usually decouples the
noise: ``x ← x − s·∇U + σ·ξ`` (``noise_scale=σ``). That is the Langevin update
for ``exp(−U/T)`` with temperature ``T = σ²/(2s)`` and step ``s·T``: e.g. the
popular ``s = 1, σ = 0.01`` samples at ``T = 5·10⁻⁵``, almost gradient descent.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor

from ebmlab.samplers.base import (
    Energy,
    FusedSteps,
    Sampler,
    SamplerState,
    StepInfo,
    _flat_norm,
    check_positive,
    clip_grad_norm,
)


class Langevin(Sampler):
    """Unadjusted Langevin: ``x ← x − s·∇U(x) + σ·ξ``, ``σ = √(2s)`` unless given.

    Parameters: ``step_size`` s > 0; ``noise_scale`` σ ≥ 0 (``None``: √(2s), the
    exact-temperature form; 0: gradient descent). Stationary law is ``exp(−U/T)``
    up to O(s) bias, with ``T = σ²/(2s)`` (:attr:`temperature`).

    Eager steps take ``∇U`` from the energy's closed form when it has one
    (:mod:`ebmlab.energies.closed_form`: no autograd graph) and draw ``ξ`` into a
    reused buffer: 0.87–0.94× the time of a hand-written autograd loop on a CPU MLP
    and 0.75–0.85× on a small ConvNet over three runs (``bench/samplers.py``,
    ``docs/results/samplers_fastpath.md``).

    ``compile=True`` runs ``chunk`` steps at a time as one ``torch.compile``'d graph
    (gradients by ``torch.func``) when no callback or trajectory is requested (the
    training diagnostics are no callback): the same noise stream and non-finite
    checks, about 0.8× a hand-written loop's time on a CPU MLP after a one-off
    compile of 20–50 s per energy and chain shape, i.e. worth it past ~50,000 steps
    there, and no faster than the eager steps on the ConvNet. Falls back to the eager
    steps, with a warning, where the energy cannot be compiled.
    """

    name = "langevin"

    def __init__(
        self,
        step_size: float,
        noise_scale: float | None = None,
        *,
        clamp: tuple[float, float] | None = None,
        grad_clip: float | None = None,
        compile: bool = False,
        chunk: int = 8,
    ) -> None:
        super().__init__(clamp=clamp, grad_clip=grad_clip)
        self.step_size = check_positive("step_size", step_size)
        self.noise_scale = (
            math.sqrt(2 * self.step_size)
            if noise_scale is None
            else check_positive("noise_scale", noise_scale, allow_zero=True)
        )
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"chunk must be an integer >= 1, got {chunk!r}")
        self.compile = bool(compile)
        self.chunk = chunk
        self._compiled: tuple[Energy, FusedSteps] | None = None
        self._noise: Tensor | None = None  # scratch for ξ, reused while x's layout holds

    @classmethod
    def from_delta(cls, delta: float, **kwargs: Any) -> Langevin:
        """The papers' form ``x ← x − (δ²/2)∇U + δξ``: step ``δ²/2``, noise ``δ``."""
        delta = check_positive("delta", delta)
        return cls(delta**2 / 2, delta, **kwargs)

    @property
    def temperature(self) -> float:
        """``T = σ²/(2s)``: the chain targets ``exp(−U/T)``."""
        return self.noise_scale**2 / (2 * self.step_size)

    def _scale(self, grad: Tensor) -> Tensor | float:
        """Relative step per entry (1 for plain Langevin; AniLA overrides)."""
        return 1.0

    def _move(self, x: Tensor, g: Tensor, noise: Tensor) -> Tensor:
        """One update ``x − s·γ·∇U + σ·√γ·ξ`` (γ = 1 for plain Langevin), then the clamp."""
        scale = self._scale(g)
        if isinstance(scale, float):
            out = torch.add(x, g, alpha=-self.step_size)
            out.add_(noise, alpha=self.noise_scale)
        else:
            out = x - (self.step_size * scale) * g + (self.noise_scale * scale.sqrt()) * noise
        return self._clamp_(out)

    def _gaussian(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        """Standard normal ``ξ`` like ``x``, drawn into a buffer reused across steps (the
        same numbers as :func:`gaussian_like`; ``ξ`` is used at once, never kept)."""
        buf = self._noise
        if buf is None or buf.shape != x.shape or buf.dtype != x.dtype \
                or buf.device != x.device:
            buf = self._noise = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        return buf.normal_(generator=generator)

    def step(
        self, energy: Energy, state: SamplerState, generator: torch.Generator | None = None
    ) -> tuple[SamplerState, StepInfo]:
        u, g = self._grad_at(energy, state)
        x = self._move(state.x, g, self._gaussian(state.x, generator))
        info = StepInfo(energy=u, grad_norm=_flat_norm(g), step_size=self.step_size)
        return SamplerState(x=x, n_steps=state.n_steps + 1), info

    def fused_steps(self, energy: Energy) -> FusedSteps:
        if self._compiled is not None and self._compiled[0] is energy:
            return self._compiled[1]

        def value(y: Tensor) -> tuple[Tensor, Tensor]:
            u = energy(y)
            return u.sum(), u

        grad_and_value = torch.func.grad_and_value(value, has_aux=True)

        def steps(x: Tensor, noise: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            us, norms = [], []
            for j in range(noise.shape[0]):
                g, (_, u) = grad_and_value(x)
                g = clip_grad_norm(g, self.grad_clip)
                us.append(u)
                norms.append(_flat_norm(g))
                x = self._move(x, g, noise[j])
            return x, torch.stack(us), torch.stack(norms)

        compiled = torch.compile(steps, dynamic=False)

        def guarded(x: Tensor, noise: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            nonlocal compiled
            try:
                return compiled(x, noise)
            except Exception as exc:  # no C++ compiler, an untraceable energy, ...
                if compiled is steps:
                    raise
                warnings.warn(f"{type(self).__name__}(compile=True): torch.compile failed "
                              f"({type(exc).__name__}); running the same steps eagerly",
                              RuntimeWarning, stacklevel=3)
                compiled = steps
                return steps(x, noise)

        self._compiled = (energy, guarded)
        return guarded

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_compiled": None, "_noise": None}


class AniLA(Langevin):
    """Anisotropic Langevin (AniLA paper, Eq. 2–3): the step shrinks where ‖∇U‖ is large.

    ``γ(x) = b / max(b, |∇U(x)|)`` (``b = threshold``) scales the Langevin step:
    ``x ← x − s·γ·∇U + σ·√γ·ξ`` (σ = √(2s) by default, so ``s·γ`` is the local
    step and the paper's update ``z + (γ/2)∇f + √γ B`` is ``s = ½``).

    ``mode="elementwise"`` (default) takes ``|∂ⱼU|`` per coordinate, a diagonal,
    truly *anisotropic* preconditioner — the paper's point, and what keeps a
    single steep pixel from freezing the whole image. ``mode="norm"`` uses the
    chain's gradient norm ‖∇U‖ (one isotropic step per chain).

    Caveat (maths, not implementation): a state-dependent step without the
    Itô correction term ``∇·γ`` is not exact even as ``s → 0``. In ``norm`` mode
    the small-step limit is ``p_b(x) ∝ exp(−U(x))·max(b, ‖∇U(x)‖)/b``, which
    equals the target wherever ``‖∇U‖ ≤ b``; choose ``b`` above the gradient
    norms typical of the target's mass to sample it, smaller to tame early,
    far-from-equilibrium chains (the training use of the paper).
    """

    name = "anila"

    def __init__(
        self,
        step_size: float,
        threshold: float,
        noise_scale: float | None = None,
        *,
        mode: str = "elementwise",
        clamp: tuple[float, float] | None = None,
        grad_clip: float | None = None,
        compile: bool = False,
        chunk: int = 8,
    ) -> None:
        super().__init__(step_size, noise_scale, clamp=clamp, grad_clip=grad_clip,
                         compile=compile, chunk=chunk)
        self.threshold = check_positive("threshold", threshold)
        if mode not in ("elementwise", "norm"):
            raise ValueError(f"mode must be 'elementwise' or 'norm', got {mode!r}")
        self.mode = mode

    def _scale(self, grad: Tensor) -> Tensor:
        b = self.threshold
        if self.mode == "elementwise":
            return b / grad.abs().clamp_min(b)
        norm = _flat_norm(grad).clamp_min(b)
        return (b / norm).view(-1, *([1] * (grad.dim() - 1)))
