"""Energies that know their own gradient: ``(U(x), ∇ₓU(x))`` without the autograd engine.

The protocol: an energy module may define ``energy_and_grad(x) -> (U, ∇ₓU)``, both
detached, ``U`` of shape ``(B,)`` and ``∇ₓU`` of ``x``'s shape. The samplers' gradient
(:func:`ebmlab.samplers.base.energy_and_grad`) calls it when present, and autograd
otherwise. :class:`~ebmlab.energies.MLPEnergy`, :class:`~ebmlab.energies.ConvEnergy` and
:class:`~ebmlab.energies.GaussianReference` define it.

For a network ``U(x) = w·h_L + c``, ``h_ℓ = φ(a_ℓ)``, ``a_ℓ = A_ℓ(h_{ℓ−1})`` (``A_ℓ`` a
linear layer or a convolution, ``h_0 = x``), the chain rule (back-propagation) reads

    ∂U/∂h_L = w,   ∂U/∂a_ℓ = φ'(a_ℓ) ⊙ ∂U/∂h_ℓ,   ∂U/∂h_{ℓ−1} = A_ℓᵀ ∂U/∂a_ℓ,

and ``∇ₓU = ∂U/∂h_0``: one forward pass keeping what ``φ'`` needs, one backward pass of
transposed products (``g·W`` for a linear layer, the transposed convolution for a
convolution), with ``φ'`` applied by the ATen kernels autograd itself uses. So the
numbers are autograd's up to float rounding (bit for bit on the MLP), at the cost of the
products alone: no graph is recorded, no engine runs, activations whose derivative is a
function of their output (ReLU, leaky ReLU, tanh) are applied in place.

The closed form applies to the plain modules it knows: exact types ``nn.Linear`` /
``nn.Conv2d`` (zero padding) and the activations of :data:`RULES`, without forward or
backward hooks (of the module or global) and without parametrisation (spectral or
weight normalisation), outside autocast and for plain tensors. Anything else — a
subclass too — is handed to autograd (:func:`autograd_energy_and_grad`), so the method
is always safe to call. :func:`disabled` turns the closed form off for a block (the
samplers then use autograd for every energy).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules import module as _module_mod

aten = torch.ops.aten

_enabled = True


def enabled() -> bool:
    """Whether the samplers ask energies for their closed-form gradient (default: yes)."""
    return _enabled


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Inside, the samplers compute every gradient by autograd (process-wide; for
    comparisons and debugging). Restored on exit."""
    global _enabled
    before, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = before


def autograd_energy_and_grad(energy: Callable[[Tensor], Tensor], x: Tensor
                             ) -> tuple[Tensor, Tensor]:
    """``U(x)`` of shape ``(B,)`` and ``∇ₓU(x)`` by autograd, both detached."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        u = energy(xg)
        if not isinstance(u, Tensor) or u.shape != (x.shape[0],):
            shape = tuple(u.shape) if isinstance(u, Tensor) else type(u).__name__
            raise ValueError(
                f"energy must map a batch of shape {tuple(x.shape)} to shape "
                f"({x.shape[0]},), got {shape}"
            )
        (g,) = torch.autograd.grad(u.sum(), xg)
    return u.detach(), g


# -- activations ---------------------------------------------------------------------------
class Rule(NamedTuple):
    """``forward(m, a) -> (h, kept)`` (may overwrite ``a``, a fresh tensor) and
    ``backward(m, ∂U/∂h, kept) -> ∂U/∂a`` for an activation module ``m``. The module's
    attributes (a slope, β) are read at every call."""

    forward: Callable[[Any, Tensor], tuple[Tensor, Tensor]]
    backward: Callable[[Any, Tensor, Tensor], Tensor]


def _leaky_forward(m: Any, a: Tensor) -> tuple[Tensor, Tensor]:
    if m.negative_slope > 0:  # sign φ(a) = sign a: the derivative from the output, in place
        h = F.leaky_relu_(a, m.negative_slope)
        return h, h
    return F.leaky_relu(a, m.negative_slope), a


def _leaky_backward(m: Any, g: Tensor, kept: Tensor) -> Tensor:
    return aten.leaky_relu_backward(g, kept, m.negative_slope, m.negative_slope > 0)


def _same(fn: Callable[[Tensor], Tensor]) -> Callable[[Any, Tensor], tuple[Tensor, Tensor]]:
    def forward(m: Any, a: Tensor) -> tuple[Tensor, Tensor]:
        h = fn(a)
        return h, h
    return forward


RULES: dict[type[nn.Module], Rule] = {
    nn.SiLU: Rule(lambda m, a: (F.silu(a), a), lambda m, g, a: aten.silu_backward(g, a)),
    nn.LeakyReLU: Rule(_leaky_forward, _leaky_backward),
    nn.ELU: Rule(lambda m, a: (F.elu(a, m.alpha), a),
                 lambda m, g, a: aten.elu_backward(g, m.alpha, 1, 1, False, a)),
    nn.Tanh: Rule(_same(torch.tanh_), lambda m, g, h: aten.tanh_backward(g, h)),
    nn.Softplus: Rule(lambda m, a: (F.softplus(a, m.beta, m.threshold), a),
                      lambda m, g, a: aten.softplus_backward(g, a, m.beta, m.threshold)),
    nn.ReLU: Rule(_same(torch.relu_), lambda m, g, h: aten.threshold_backward(g, h, 0)),
}
"""Closed-form activations by exact type: the forward and autograd's own derivative kernel."""


# -- when the closed form applies ----------------------------------------------------------
def _global_hooks() -> bool:
    check = getattr(_module_mod, "_has_any_global_hook", None)
    if check is not None:
        return bool(check())
    return any(getattr(_module_mod, name, None) for name in (
        "_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
        "_global_backward_pre_hooks", "_global_forward_hooks_always_called"))


def _autocast(x: Tensor) -> bool:
    try:
        return bool(torch.is_autocast_enabled(x.device.type))
    except (RuntimeError, TypeError, ValueError):  # a device type autocast does not know
        return True


class Plan(NamedTuple):
    """A network as ``[(layer, activation, rule), …]`` and its head, with every module
    and its exact type at the time the plan was made."""

    key: tuple[nn.Module, ...]
    blocks: list[tuple[Any, Any, Rule]]  # (layer, activation, rule)
    head: Any
    typed: tuple[tuple[nn.Module, type], ...]


_PLANS: weakref.WeakKeyDictionary[nn.Module, Plan] = weakref.WeakKeyDictionary()


def _make_plan(seq: nn.Sequential, mods: tuple[nn.Module, ...], kind: type[nn.Module],
               head: nn.Module) -> Plan | None:
    if len(mods) % 2 or type(head) is not nn.Linear:
        return None
    blocks = []
    for layer, act in zip(mods[::2], mods[1::2], strict=True):
        rule = RULES.get(type(act))
        if type(layer) is not kind or rule is None:
            return None
        if isinstance(layer, nn.Conv2d) and (layer.padding_mode != "zeros"
                                             or isinstance(layer.padding, str)):
            return None
        blocks.append((layer, act, rule))
    typed = tuple((m, type(m)) for m in (seq, *mods, head))
    return Plan((*mods, head), blocks, head, typed)


def plan(owner: nn.Module, seq: nn.Sequential, kind: type[nn.Module], x: Tensor,
         head: nn.Module | None = None) -> Plan | None:
    """The closed-form plan of ``owner``: ``seq`` alternates layers of exact type ``kind``
    and activations of :data:`RULES`, then the linear ``head`` (``None``: ``seq``'s last
    module). ``None`` when the closed form does not apply now (another structure, a hook,
    a parametrisation — which changes a module's type —, autocast, a tensor subclass, or
    :func:`disabled`). Made once per module structure, its conditions checked at every
    call (a few µs)."""
    if not _enabled or type(x) is not Tensor or _autocast(x) or _global_hooks():
        return None
    key = tuple(seq) if head is None else (*seq, head)
    p = _PLANS.get(owner)
    if p is None or p.key != key:
        p = _make_plan(seq, key[:-1], kind, key[-1])
        if p is None:
            return None
        _PLANS[owner] = p
    for m, t in (*p.typed, (owner, type(owner))):
        if (type(m) is not t or m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                or m._backward_pre_hooks):
            return None
    return p


__all__ = ["RULES", "Plan", "Rule", "autograd_energy_and_grad", "disabled", "enabled", "plan"]
