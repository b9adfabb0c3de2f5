"""The one method interface every learning method implements.

A method owns its models (energy, and later generators/inference nets), its
sampler and its chains. Given a data batch it returns the losses to minimise,
one per optimised module, and scalar metrics to log; it never opens files and
never steps an optimiser: the trainer does that, without knowing which
method it runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn


@dataclass
class StepOutput:
    """``losses[name]`` is minimised w.r.t. ``method.modules()[name]``'s parameters.

    Losses of different modules must not share gradient paths (detach where
    one model feeds another), so the trainer can back-propagate their sum.
    """

    losses: dict[str, Tensor]
    metrics: dict[str, float] = field(default_factory=dict)
    negatives: Tensor | None = None


class Method:
    """Base class: a learning method. Subclasses set ``name`` and implement :meth:`step`."""

    name = "method"
    sampler: Any = None  # the sampler producing negatives, if the method uses one

    def modules(self) -> dict[str, nn.Module]:
        """The trained models by name (each gets its own optimiser in the trainer)."""
        raise NotImplementedError

    def step(self, batch: Tensor, generator: torch.Generator | None = None) -> StepOutput:
        """Losses and metrics for one data batch ``(B, *shape)``."""
        raise NotImplementedError

    def noise_init(self, n: int, generator: torch.Generator | None = None) -> Tensor | None:
        """``n`` chains from the method's noise distribution (``None`` if it has none)."""
        return None

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor | None:
        """``n`` samples of the method's own generative process (short-run chains from
        noise, a generator network), for plots; ``None`` if it has none."""
        return None

    def lr_scale(self) -> float:
        """Factor applied to every learning rate (1 unless the method tunes it)."""
        return 1.0

    def state_dict(self) -> dict[str, Any]:
        """Method state beyond the modules' parameters (chains, buffers, counters)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} has no state; got keys {sorted(state)}")
