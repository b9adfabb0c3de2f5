"""The one method interface every learning method implements (contract v2).

A method owns its models (energy, generators, encoders, bare parameters), its
samplers (one per role) and its chains. It says

* what is trained: :meth:`Method.param_groups`, one optimiser each;
* what to minimise: :meth:`Method.step` returns one loss per group, and the
  trainer back-propagates each loss **to its own group only** (two players may
  share a graph, e.g. KALE's energy and base; one loss may span two modules, e.g.
  a VAE's encoder and decoder); a group with no loss in an iteration is not
  stepped (n critic steps per generator step);
* how to draw from its model: :meth:`Method.target` (a :class:`SamplingTarget`)
  and :meth:`Method.sample`, used by the long-run check, the plots,
  ``ebmlab sample --run`` and ``load_run(path).sample(n)``;
* how to complete images: :meth:`Method.complete` samples the missing pixels from the
  model's conditional, starting from :meth:`Method.completion_start` (``ebmlab inpaint``).

It never opens files and never steps an optimiser: the trainer does that,
without knowing which method it runs. ``rng`` is always a ``torch.Generator``
(the random stream), never a network.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ebmlab.chains import ChainSource
from ebmlab.samplers.base import Sampler, StepInfo, drive, frozen
from ebmlab.samplers.masked import as_mask, sample_masked

Batch = Tensor | Mapping[str, Tensor]
"""A data batch: a tensor ``(B, *shape)``, or a mapping with ``"x"`` (and optionally
``"mask"``, ``"condition"``) whose tensors share dim 0."""


def batch_x(batch: Batch) -> Tensor:
    """The data points of a batch (the tensor itself, or ``batch["x"]``)."""
    return batch if isinstance(batch, Tensor) else batch["x"]


@dataclass
class StepOutput:
    """``losses[group]`` is minimised w.r.t. ``method.param_groups()[group]`` only."""

    losses: dict[str, Tensor]
    metrics: dict[str, float] = field(default_factory=dict)
    negatives: Tensor | None = None


@dataclass
class SamplingTarget:
    """How to draw from a model: chains from ``init`` run ``n_steps`` of ``sampler`` on
    ``energy`` (x-space ``U(x)``, or a latent energy), then ``decode`` maps chain states
    to data (``None``: the chains are data points). ``origin`` names where chains start,
    for plot titles."""

    energy: Any
    sampler: Any
    init: ChainSource
    n_steps: int
    decode: Callable[[Tensor], Tensor] | None = None
    origin: str = "noise"

    def describe(self, n_steps: int | None = None, origin: str | None = None) -> str:
        """``"<n> <sampler> steps from <origin>"`` (``origin`` overrides where chains start)."""
        steps = self.n_steps if n_steps is None else n_steps
        start = self.origin if origin is None else origin
        if steps == 0:
            return start
        return f"{steps} {getattr(self.sampler, 'name', 'sampler')} steps from {start}"


class Method:
    """Base class: a learning method. Subclasses set ``name`` and implement
    :meth:`modules`, :meth:`step` and :meth:`target`."""

    name = "method"
    # Negatives are (approximate) MCMC samples of the model, so d_st = mean U(x⁺) − mean U(x⁻)
    # oscillates around 0 while learning is stable (Anatomy, Sec. 4), and the divergence
    # monitor may read a one-sided d_st as trouble. Amortized negatives (a generator that
    # lags the energy) keep d_st one-sided by design: such methods set this False.
    d_st_settles = True

    def modules(self) -> dict[str, nn.Module]:
        """Every model the method holds, by name (checkpointed, moved to the device)."""
        raise NotImplementedError

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trained parameters by group, one optimiser each; default: one group per module
        with parameters. A group may span modules or hold a bare parameter; no parameter
        may be in two groups."""
        return {k: list(m.parameters()) for k, m in self.modules().items()
                if any(True for _ in m.parameters())}

    def step(self, batch: Batch, rng: torch.Generator | None = None) -> StepOutput:
        """Losses (keyed by group) and metrics for one data batch."""
        raise NotImplementedError

    def energy_model(self) -> nn.Module | None:
        """``U`` with ``p(x) ∝ exp(−U(x))`` in the method's (standardised) coordinates, or
        ``None`` when the model has no density."""
        return getattr(self, "energy", None)

    def target(self) -> SamplingTarget | None:
        """How to sample the model (``None``: it cannot be sampled)."""
        return None

    def sample(self, n: int, *, n_steps: int | None = None, x0: Tensor | None = None,
               rng: torch.Generator | None = None) -> Tensor:
        """``n`` model samples: chains from ``x0`` (default: the target's init) run for
        ``n_steps`` (default: the target's), then decoded. Detached."""
        t = self.target()
        if t is None:
            raise ValueError(f"method {self.name!r} cannot be sampled")
        steps = t.n_steps if n_steps is None else n_steps
        x = t.init.sample(n, generator=rng) if x0 is None else x0
        if steps > 0:
            x = t.sampler.run(t.energy, x, steps, generator=rng)
        if t.decode is not None:
            with torch.no_grad(), frozen(t.decode):
                x = t.decode(x)
        return x.detach()

    def completion_start(self, x: Tensor, mask: Tensor, rng: torch.Generator | None
                         ) -> Tensor | None:
        """Where completion chains start: values for whole images ``(B, *shape)`` in the
        method's standardised coordinates, of which only the missing pixels (``mask == 1``)
        are used (the observed ones are taken from ``x``). ``None`` (the default): the
        target's chain start (fresh noise for maximum-likelihood methods). A method with a
        generator overrides this (e.g. decode an encoding of the masked image)."""
        return None

    def complete(self, x: Tensor, mask: Tensor, *, n_steps: int | None = None,
                 rng: torch.Generator | None = None) -> Tensor:
        """Images ``x`` ``(B, *shape)`` (standardised coordinates) with the pixels where
        ``mask == 1`` (one mask, or one per image) drawn from the model's conditional

            p(x_m | x_o) ∝ exp(−U(x_o ⊕ x_m)),

        ``U`` = :meth:`energy_model`: ``n_steps`` (default: the target's) of the target's
        sampler on the missing pixels only (:func:`ebmlab.samplers.masked.sample_masked`;
        the observed pixels are ``x``'s, bit for bit, at every step), started from
        :meth:`completion_start` or else the target's chain start. Detached."""
        energy, t = self.energy_model(), self.target()
        if energy is None or t is None:
            raise ValueError(f"method {self.name!r} has no energy and sampler to complete "
                             "images with")
        if t.decode is not None:
            raise ValueError(f"method {self.name!r} samples in a latent space; it needs its "
                             "own complete()")
        mask = as_mask(mask, x)
        start = self.completion_start(x, mask, rng)
        if start is None:
            start = t.init.sample(x.shape[0], generator=rng)
        start = start.to(x.device, x.dtype)
        if tuple(start.shape) != tuple(x.shape):
            raise ValueError(f"completion start of shape {tuple(start.shape)} does not match "
                             f"the images {tuple(x.shape)}")
        steps = t.n_steps if n_steps is None else n_steps
        return sample_masked(t.sampler, energy, x, mask, steps, x0=start, generator=rng).detach()

    def lr_scale(self, group: str) -> float:
        """Factor applied to ``group``'s learning rate (1 unless the method tunes it)."""
        return 1.0

    def state_dict(self) -> dict[str, Any]:
        """Method state beyond the modules' parameters (chains, buffers, counters)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} has no state; got keys {sorted(state)}")


def contrastive_loss(energy: nn.Module, x_pos: Tensor, x_neg: Tensor, *,
                     energy_penalty: float = 0.0, neg_weight: float = 1.0
                     ) -> tuple[Tensor, dict[str, float]]:
    """The contrastive (CD-type) energy loss and its diagnostics (Anatomy Eq. 2):

        loss = mean U(x⁺) − w · mean U(x⁻) + α · mean(U(x⁺)² + U(x⁻)²),

    ``w = 1`` except for SteinGAN's discount ``w = 1 − γ``. Metrics: ``d_st = mean U(x⁺)
    − mean U(x⁻)`` (Anatomy's stability diagnostic), ``energy_pos``, ``energy_neg`` and
    ``energy_sd``, the spread of ``U`` over the data batch (a shift-invariant energy scale).
    """
    u_pos, u_neg = energy(x_pos), energy(x_neg)
    d_st = u_pos.mean() - u_neg.mean()
    loss = u_pos.mean() - neg_weight * u_neg.mean()
    if energy_penalty > 0:
        loss = loss + energy_penalty * (u_pos.square().mean() + u_neg.square().mean())
    metrics = {"d_st": float(d_st.detach()), "energy_pos": float(u_pos.detach().mean()),
               "energy_neg": float(u_neg.detach().mean()),
               "energy_sd": float(u_pos.detach().std()) if u_pos.shape[0] > 1 else 0.0}
    return loss, metrics


def sample_with_diagnostics(sampler: Any, energy: nn.Module, x0: Tensor, n_steps: int,
                            rng: torch.Generator | None, mask: Tensor | None = None
                            ) -> tuple[Tensor, dict[str, float]]:
    """``n_steps`` of ``sampler`` from ``x0``, and the chains' diagnostics: ``r_t = s · mean
    ‖∇U‖`` over the steps (Anatomy, Sec. 4; ``s`` the sampler's step) and, for a Metropolis
    sampler, ``accept``, the mean acceptance probability. With ``mask`` (1 = missing) only
    the missing coordinates move (:func:`~ebmlab.samplers.masked.sample_masked`; the others
    are ``x0``'s, and ``‖∇U‖`` is over the chain's coordinates). The step infos are
    collected by the driver (:func:`~ebmlab.samplers.base.drive`), not by a callback, so
    non-finite checks stay batched and a ``compile=True`` sampler runs compiled."""
    infos: list[StepInfo] = []
    if mask is not None:
        x = sample_masked(sampler, energy, x0, mask, n_steps, generator=rng,
                          callback=lambda i, state, info: infos.append(info))
    elif (isinstance(sampler, Sampler) and type(sampler).run is Sampler.run
          and "run" not in vars(sampler)):  # a wrapped run (e.g. a counter) is called
        x = drive(sampler, energy, x0, n_steps, generator=rng, infos=infos)[0].x
    else:
        x = sampler.run(energy, x0, n_steps, generator=rng,
                        callback=lambda i, state, info: infos.append(info))
    metrics: dict[str, float] = {}
    if infos:
        step = float(getattr(sampler, "step_size", 0.0))
        norms = torch.stack([info.grad_norm for info in infos])  # (steps, chains)
        metrics["r_t"] = step * float(norms.mean(dim=1).mean())
        accepts = [info.accept_prob for info in infos if info.accept_prob is not None]
        if accepts:
            metrics["accept"] = float(torch.stack(accepts).mean(dim=1).mean())
    return x, metrics
