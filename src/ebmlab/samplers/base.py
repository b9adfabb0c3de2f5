"""The one sampler interface and the shared driver that loops, thins and calls back.

Every sampler is an object built with its hyperparameters and exposes

* ``init(energy, x0) -> state``: an explicit state (a dataclass) for chains ``x0``
  of shape ``(B, *shape)``; chains live on dim 0, ``*shape`` is anything.
* ``step(energy, state, generator=None) -> (state, info)``: one transition, with
  a :class:`StepInfo` describing it (energy, gradient norm, acceptance).
* ``run(energy, x0, n_steps, *, generator=None, callback=None) -> Tensor``:
  the final states, via the shared driver :func:`drive`.
* ``trajectory(...)``: the states every ``thin`` steps, shape ``(T, B, *shape)``.

An energy is any callable (usually an ``nn.Module``) mapping ``(B, *shape)`` to
``(B,)``; lower is more likely, the target is ``p(x) ∝ exp(-U(x))``.
Gradients come from :func:`energy_and_grad`: the energy's own closed form
(``energy.energy_and_grad(x)``, see :mod:`ebmlab.energies.closed_form`) when it has
one, autograd otherwise.
Device and dtype come from ``x0``. While a sampler runs, the modules the energy
touches are in eval mode with their parameters frozen (``requires_grad=False``),
each flag restored after (:func:`frozen`), so no parameter gradient is built or
left behind and no batch-norm statistics move; every state is detached: memory
does not grow with ``n_steps``.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from ebmlab.energies import closed_form
from ebmlab.energies.closed_form import autograd_energy_and_grad

Energy = Callable[[Tensor], Tensor]
Callback = Callable[[int, "SamplerState", "StepInfo"], None]
FusedSteps = Callable[[Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]


class NonFiniteError(FloatingPointError):
    """An energy, gradient or state became NaN or infinite."""


@dataclass
class SamplerState:
    """Chain states ``x`` with the energy and gradient at ``x`` when they are known."""

    x: Tensor
    energy: Tensor | None = None
    grad: Tensor | None = None
    n_steps: int = 0


@dataclass
class StepInfo:
    """What happened in one step, per chain.

    ``energy`` and ``grad_norm`` are taken at the state the step started from;
    ``accept_prob`` and ``accepted`` are set by Metropolis-adjusted samplers.
    """

    energy: Tensor
    grad_norm: Tensor
    accept_prob: Tensor | None = None
    accepted: Tensor | None = None
    step_size: float | None = None


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    """Return ``float(value)`` or raise ``ValueError`` naming ``name``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")
    return v


def check_chains(x0: Tensor) -> None:
    """Chains are a floating tensor ``(B, *shape)`` with ``B >= 1`` and finite values."""
    if not isinstance(x0, Tensor):
        raise ValueError(f"x0 must be a torch.Tensor, got {type(x0).__name__}")
    if x0.dim() < 1 or x0.shape[0] == 0:
        raise ValueError(f"x0 must have shape (n_chains >= 1, *shape), got {tuple(x0.shape)}")
    if not x0.is_floating_point():
        raise ValueError(f"x0 must be a floating tensor, got dtype {x0.dtype}")
    if not torch.isfinite(x0).all():
        raise ValueError("x0 contains NaN or infinite values")


def _flat_norm(t: Tensor) -> Tensor:
    return torch.linalg.vector_norm(t.reshape(t.shape[0], -1), dim=1)


def clip_grad_norm(grad: Tensor, max_norm: float | None) -> Tensor:
    """Scale each chain's gradient so its L2 norm is at most ``max_norm``."""
    if max_norm is None:
        return grad
    norm = _flat_norm(grad).clamp_min(1e-30)
    factor = (max_norm / norm).clamp(max=1.0)
    return grad * factor.view(-1, *([1] * (grad.dim() - 1)))


def energy_and_grad(energy: Energy, x: Tensor) -> tuple[Tensor, Tensor]:
    """``U(x)`` of shape ``(B,)`` and ``∇ₓU(x)``, both detached.

    An energy with its own ``energy_and_grad`` method (the gradient in closed form,
    :mod:`ebmlab.energies.closed_form`: ``MLPEnergy``, ``ConvEnergy``,
    ``GaussianReference``) is asked for both (unless inside ``closed_form.disabled()``);
    any other energy goes through autograd.
    """
    own = getattr(energy, "energy_and_grad", None) if closed_form.enabled() else None
    if own is not None:
        return own(x)
    return autograd_energy_and_grad(energy, x)


def modules_of(*objs: object) -> list[nn.Module]:
    """The modules an energy (or other callable) touches, found without calling it.

    A module itself; the ``__self__`` of a bound method (``energy.features``); the
    function, arguments and keywords of a ``functools.partial``; and the modules a
    function or lambda closes over (``lambda z: E(G(z))`` finds ``E`` and ``G``),
    two levels deep. Each module once, in first-seen order. Modules reached only
    through globals or attributes of plain objects are not found.
    """
    found: dict[int, nn.Module] = {}
    seen: set[int] = set()

    def visit(obj: object, depth: int) -> None:
        if obj is None or id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, nn.Module):
            found.setdefault(id(obj), obj)
            return
        if depth > 2:
            return
        if isinstance(obj, functools.partial):
            for o in (obj.func, *obj.args, *obj.keywords.values()):
                visit(o, depth + 1)
            return
        owner = getattr(obj, "__self__", None)
        if isinstance(owner, nn.Module):
            visit(owner, depth)
        func = getattr(obj, "__func__", obj)
        for cell in getattr(func, "__closure__", None) or ():
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            visit(contents, depth + 1)

    for o in objs:
        visit(o, 0)
    return list(found.values())


@contextlib.contextmanager
def frozen(*objs: object) -> Iterator[None]:
    """Sampling hygiene for the modules that ``objs`` touch (see :func:`modules_of`).

    Inside: every submodule in eval mode (no batch-norm statistics updated or used
    across chains, no dropout, no spectral-norm power iterations) and every parameter
    ``requires_grad=False`` (no parameter graph is built). After, also when the body
    raises: each submodule's own ``training`` flag and each parameter's
    ``requires_grad`` exactly as they were (a submodule already in eval mode, or a
    parameter already frozen, stays so). Nesting is harmless.
    """
    subs: dict[int, nn.Module] = {}
    for m in modules_of(*objs):
        for sub in m.modules():
            subs.setdefault(id(sub), sub)
    flags = [(m, m.training) for m in subs.values()]
    params: dict[int, nn.Parameter] = {}
    for m in subs.values():
        for prm in m.parameters(recurse=False):
            if prm.requires_grad:
                params.setdefault(id(prm), prm)
    try:
        for m, _ in flags:
            m.training = False
        for prm in params.values():
            prm.requires_grad_(False)
        yield
    finally:
        for m, flag in flags:
            m.training = flag
        for prm in params.values():
            prm.requires_grad_(True)


class Sampler:
    """Base class: subclasses implement :meth:`init` and :meth:`step`.

    Common options: ``clamp=(low, high)`` keeps states in a box (unadjusted
    samplers clamp the new state; Metropolis samplers reject proposals outside
    the box, which keeps them exact for the target truncated to the box), and
    ``grad_clip`` caps each chain's gradient L2 norm (Metropolis samplers stay
    exact since the clipped drift is used in the proposal density too).
    """

    name = "sampler"

    def __init__(
        self, *, clamp: tuple[float, float] | None = None, grad_clip: float | None = None
    ) -> None:
        if clamp is not None:
            try:
                low, high = (float(c) for c in clamp)
            except (TypeError, ValueError):
                raise ValueError(f"clamp must be a pair (low, high), got {clamp!r}") from None
            if not low < high:
                raise ValueError(f"clamp must satisfy low < high, got {clamp!r}")
            clamp = (low, high)
        self.clamp = clamp
        self.grad_clip = None if grad_clip is None else check_positive("grad_clip", grad_clip)

    # -- to implement -------------------------------------------------------------
    def init(self, energy: Energy, x0: Tensor) -> SamplerState:
        check_chains(x0)
        return SamplerState(x=x0.detach().clone())

    def step(
        self, energy: Energy, state: SamplerState, generator: torch.Generator | None = None
    ) -> tuple[SamplerState, StepInfo]:
        raise NotImplementedError

    # -- shared helpers ------------------------------------------------------------
    def _grad_at(self, energy: Energy, state: SamplerState) -> tuple[Tensor, Tensor]:
        """Energy and (clipped) gradient at ``state.x``, reusing cached values."""
        if state.energy is None or state.grad is None:
            u, g = energy_and_grad(energy, state.x)
            return u, clip_grad_norm(g, self.grad_clip)
        return state.energy, state.grad

    def _inside(self, x: Tensor) -> Tensor:
        """Per-chain flag: every coordinate of ``x`` lies in the clamp box."""
        if self.clamp is None:
            return torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        flat = x.reshape(x.shape[0], -1)
        return ((flat >= self.clamp[0]) & (flat <= self.clamp[1])).all(dim=1)

    def _clamp_(self, x: Tensor) -> Tensor:
        if self.clamp is not None:
            x.clamp_(*self.clamp)
        return x

    # -- the driver ----------------------------------------------------------------
    def run(
        self,
        energy: Energy,
        x0: Tensor,
        n_steps: int,
        *,
        generator: torch.Generator | None = None,
        callback: Callback | None = None,
    ) -> Tensor:
        """Run ``n_steps`` transitions from ``x0``; return the final states."""
        return drive(self, energy, x0, n_steps, generator=generator, callback=callback)[0].x

    def trajectory(
        self,
        energy: Energy,
        x0: Tensor,
        n_steps: int,
        *,
        thin: int = 1,
        generator: torch.Generator | None = None,
        callback: Callback | None = None,
    ) -> Tensor:
        """States after every ``thin``-th step, stacked to ``(n_steps // thin, B, *shape)``."""
        kept: list[Tensor] = []
        drive(self, energy, x0, n_steps, generator=generator, callback=callback,
              thin=thin, keep=kept)
        if not kept:
            return x0.new_empty((0, *x0.shape))
        return torch.stack(kept)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


_ALLOCATOR_PRIMED = False


def prime_cpu_allocator() -> None:
    """Once per process, allocate and free one 32 MiB block (never touched).

    glibc serves large blocks with ``mmap`` and unmaps them on free until a freed
    block raises its thresholds (up to 32 MiB mmap / 64 MiB trim). A sampler frees
    and reallocates the energy's activations every step, so until then each step
    page-faults its activations in again: ~7,000 faults per step for a small
    ConvNet on 100 images, half the step time. One free of a 32 MiB block lifts the
    thresholds for the rest of the process (bench/samplers.py, ``--isolate``:
    ConvNet 0.86× → 0.52× a bare loop's time). Cost: up to 64 MiB of freed memory
    stays with the process. No effect on other allocators.
    """
    global _ALLOCATOR_PRIMED
    if not _ALLOCATOR_PRIMED:
        _ALLOCATOR_PRIMED = True
        block = torch.empty(32 * 2**20 - 2**16, dtype=torch.uint8)
        del block


def drive(
    sampler: Sampler,
    energy: Energy,
    x0: Tensor,
    n_steps: int,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    thin: int = 1,
    keep: list[Tensor] | None = None,
    state: SamplerState | None = None,
    infos: list[StepInfo] | None = None,
) -> tuple[SamplerState, StepInfo | None]:
    """The loop every sampler shares: steps, non-finite checks, thinning, callbacks.

    ``keep`` collects a clone of the state every ``thin`` steps; ``infos`` every step's
    :class:`StepInfo` (what a callback would see, without a callback's per-step checks,
    so a compiled sampler stays compiled).

    A non-finite energy or gradient, or a non-finite state after the last step of a
    batch, raises :class:`NonFiniteError` naming the first bad step. Checks are
    batched every 32 steps (one reduction, and on accelerators one device sync, per
    batch; a state that went bad mid-batch shows as a bad energy at the next step's
    start), and made every step when a callback is given, so a callback never sees a
    non-finite state or a state after a bad step. The final state is always checked.

    The whole run is inside :func:`frozen` for the energy (and the sampler's
    ``features``, if any): modules in eval mode, parameters frozen, both restored after.
    """
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 0:
        raise ValueError(f"n_steps must be an integer >= 0, got {n_steps!r}")
    if isinstance(thin, bool) or not isinstance(thin, int) or thin < 1:
        raise ValueError(f"thin must be an integer >= 1, got {thin!r}")
    check_chains(x0)
    if x0.device.type == "cpu":
        prime_cpu_allocator()
    sync_every = 1 if callback is not None else 32
    info: StepInfo | None = None
    pending: list[tuple[int, StepInfo]] = []
    fused = None
    make_fused = getattr(sampler, "fused_steps", None)  # samplers with compile=True
    if getattr(sampler, "compile", False) and make_fused is not None and callback is None \
            and keep is None:
        fused = make_fused(energy)
    with frozen(energy, getattr(sampler, "features", None)):
        if state is None:
            state = sampler.init(energy, x0)
        i = 0
        while i < n_steps:
            chunk = getattr(sampler, "chunk", 1)
            if fused is not None and i > 0 and n_steps - i >= chunk:
                # k steps as one compiled graph; noise drawn here, step by step, so the
                # generator stream is the eager one.
                noise = torch.empty((chunk, *state.x.shape), dtype=state.x.dtype,
                                    device=state.x.device)
                for j in range(chunk):
                    noise[j].normal_(generator=generator)
                x, u, gn = fused(state.x, noise)
                state = SamplerState(x=x, n_steps=state.n_steps + chunk)
                new = [(i + j, StepInfo(energy=u[j], grad_norm=gn[j])) for j in range(chunk)]
                pending += new
                if infos is not None:
                    infos += [inf for _, inf in new]
                info = pending[-1][1]
                i += chunk
            else:  # step 0 always runs here: it validates the energy's output shape
                state, info = sampler.step(energy, state, generator)
                pending.append((i, info))
                if infos is not None:
                    infos.append(info)
                i += 1
            if len(pending) >= sync_every or i == n_steps:
                _check_finite(sampler, pending, state.x)
                pending.clear()
            if keep is not None and i % thin == 0:
                keep.append(state.x.clone())
            if callback is not None:
                callback(i - 1, state, info)
    return state, info


def _watched(info: StepInfo) -> dict[str, Tensor]:
    out = {"energy": info.energy, "gradient": info.grad_norm}
    if info.accept_prob is not None:
        out["proposal energy or gradient"] = info.accept_prob
    return out


def _check_finite(sampler: Sampler, pending: list[tuple[int, StepInfo]], x: Tensor) -> None:
    """Raise on the first step whose energy, gradient or acceptance is not finite, or
    (all of those finite) on the last step if the state ``x`` it produced is not."""
    watched = torch.cat([t.reshape(-1) for _, info in pending for t in _watched(info).values()])
    if bool(torch.isfinite(watched).all() & torch.isfinite(x).all()):
        return
    for i, info in pending:
        bad = [k for k, t in _watched(info).items() if not bool(torch.isfinite(t).all())]
        if bad:
            _raise_non_finite(sampler, " and ".join(bad), i)
    _raise_non_finite(sampler, "state", pending[-1][0])


def _raise_non_finite(sampler: Sampler, what: str, step: int) -> None:
    raise NonFiniteError(
        f"{type(sampler).__name__}: non-finite {what} at step {step}"
        " (lower the step size, or use clamp / grad_clip)"
    )


def gaussian_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise with ``x``'s shape, dtype and device."""
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def uniform_like(x: Tensor, n: int, generator: torch.Generator | None) -> Tensor:
    """``n`` uniforms on [0, 1) with ``x``'s dtype and device (for accept tests)."""
    return torch.rand((n,), generator=generator, dtype=x.dtype, device=x.device)


def per_chain(v: Tensor, like: Tensor) -> Tensor:
    """Reshape a ``(B,)`` tensor to broadcast against ``like`` of shape ``(B, *shape)``."""
    return v.view(-1, *([1] * (like.dim() - 1)))


__all__ = [
    "Callback",
    "Energy",
    "NonFiniteError",
    "Sampler",
    "SamplerState",
    "StepInfo",
    "check_positive",
    "clip_grad_norm",
    "drive",
    "energy_and_grad",
    "frozen",
    "modules_of",
    "replace",
]
