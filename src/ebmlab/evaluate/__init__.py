"""Evaluation: exact quadrature in 2-D (log Z, NLL, KL to the data), sample MMD and sliced
Wasserstein distances."""

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
from ebmlab.evaluate.sliced import sliced_wasserstein, wasserstein_1d

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
    "sliced_wasserstein",
    "wasserstein_1d",
]
