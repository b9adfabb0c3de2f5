"""Evaluation: exact quadrature in 2-D (log Z, NLL, KL to the data) and sample MMD."""

from ebmlab.evaluate.exact2d import (
    DEFAULT_N_GRID,
    PartitionResult,
    QuadratureWarning,
    evaluate_2d,
    grid_log_density,
    kl_divergence,
    log_density,
    log_partition,
    nll,
)
from ebmlab.evaluate.mmd import mmd2

__all__ = [
    "DEFAULT_N_GRID",
    "PartitionResult",
    "QuadratureWarning",
    "evaluate_2d",
    "grid_log_density",
    "kl_divergence",
    "log_density",
    "log_partition",
    "mmd2",
    "nll",
]
