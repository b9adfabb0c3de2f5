"""Evaluation of energies: exact quadrature in 2-D (log Z, NLL, KL to the data)."""

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

__all__ = [
    "DEFAULT_N_GRID",
    "PartitionResult",
    "QuadratureWarning",
    "evaluate_2d",
    "grid_log_density",
    "kl_divergence",
    "log_density",
    "log_partition",
    "nll",
]
