"""Data: 2-D toy sets with exact densities where they exist, and array-file loading."""

from ebmlab.data.arrays import load_array
from ebmlab.data.toy2d import (
    TOY_DATASETS,
    checkerboard,
    eight_gaussians,
    make_toy,
    moons,
    pinwheel,
    rings,
    spirals,
    swissroll,
    toy_bounds,
    toy_log_density,
    toy_target,
    twentyfive_gaussians,
)

__all__ = [
    "TOY_DATASETS",
    "checkerboard",
    "eight_gaussians",
    "load_array",
    "make_toy",
    "moons",
    "pinwheel",
    "rings",
    "spirals",
    "swissroll",
    "toy_bounds",
    "toy_log_density",
    "toy_target",
    "twentyfive_gaussians",
]
