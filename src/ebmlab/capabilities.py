"""What a model offers beyond ``U(x)``, as ``typing.Protocol``s checked here only.

The trainer's evaluators and the methods ask these functions instead of probing
attributes: an exact log-partition (``log Z``, e.g. the Gaussian–Bernoulli RBM by
enumeration, analytic targets), an importance-sampling estimate of it (a GEBM with a
flow base), exact block-Gibbs conditionals and the conditional mean of the visible units.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class ExactLogPartition(Protocol):
    """``log_partition()``: the exact ``log Z = log ∫ exp(−U(x)) dx``."""

    def log_partition(self) -> Tensor | float: ...


@runtime_checkable
class ImportanceLogPartition(Protocol):
    """``log_partition_is(n, generator)``: ``(log Z estimate, its standard error)`` from
    ``n`` importance samples (unbiased for ``Z``; ``log Ẑ`` is biased low by about se²/2)."""

    def log_partition_is(self, n: int, generator: torch.Generator | None = None
                         ) -> tuple[float, float]: ...


@runtime_checkable
class BlockGibbs(Protocol):
    """``gibbs(x, n_steps, generator)``: exact block-Gibbs sweeps of ``p ∝ exp(−U)``."""

    def gibbs(self, x: Tensor, n_steps: int = 1,
              generator: torch.Generator | None = None) -> Tensor: ...


@runtime_checkable
class VisibleMean(Protocol):
    """``visible_mean(x, generator)``: ``E[x' | h]`` with ``h ~ p(h | x)``, the noise-free
    mean of a block-Gibbs chain's next visible draw (what figures of the chains show)."""

    def visible_mean(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor: ...


def has_exact_log_partition(model: object) -> bool:
    return isinstance(model, ExactLogPartition)


def has_importance_log_partition(model: object) -> bool:
    return isinstance(model, ImportanceLogPartition)


def has_block_gibbs(model: object) -> bool:
    return isinstance(model, BlockGibbs)


def has_visible_mean(model: object) -> bool:
    return isinstance(model, VisibleMean)
