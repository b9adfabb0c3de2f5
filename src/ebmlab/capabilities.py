"""What a model offers beyond ``U(x)``, as ``typing.Protocol``s checked here only.

The trainer's evaluators and the methods ask these functions instead of probing
attributes: an exact log-partition (``log Z``, e.g. the Gaussian–Bernoulli RBM by
enumeration, analytic targets) and exact block-Gibbs conditionals.
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
class BlockGibbs(Protocol):
    """``gibbs(x, n_steps, generator)``: exact block-Gibbs sweeps of ``p ∝ exp(−U)``."""

    def gibbs(self, x: Tensor, n_steps: int = 1,
              generator: torch.Generator | None = None) -> Tensor: ...


def has_exact_log_partition(model: object) -> bool:
    return isinstance(model, ExactLogPartition)


def has_block_gibbs(model: object) -> bool:
    return isinstance(model, BlockGibbs)
