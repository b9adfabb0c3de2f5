"""A normalising-flow generator: ``x = G(z) = T⁻¹(z)``, ``z ~ N(0, I_D)``, with an exact
density ``log g(x) = log N(T(x); 0, I) + log |det ∂T/∂x|``.

Built on ``zuko`` (an optional extra, ``pip install 'ebmlab[flow]'``): a neural spline
flow (Durkan et al. 2019) whose autoregressive layers use two passes, i.e. coupling
layers, so sampling (``T⁻¹``) costs as much as a density evaluation (``T``) and
``G(z)`` is differentiable in ``z`` and in the parameters. The latent dimension is the
data dimension.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

from torch import Tensor

from ebmlab.generators.base import Generator, as_shape, check_positive_int

ZUKO_MISSING = ("generator.name = 'flow' needs the zuko package: "
                "pip install 'ebmlab[flow]' (or pip install zuko)")


def import_zuko() -> ModuleType:
    """``zuko``, or an ``ImportError`` whose message says how to install it."""
    try:
        import zuko
    except ImportError:
        raise ImportError(ZUKO_MISSING) from None
    return zuko


class FlowGenerator(Generator):
    """A spline flow on vectors of dimension ``D`` (``output_shape = (D,)``, ``D >= 2``):
    ``transforms`` coupling layers, each conditioned by an MLP with ``depth`` hidden layers
    of ``width`` units, ``bins`` rational-quadratic spline bins on [−5, 5] (identity
    outside, where standardised data hardly go)."""

    def __init__(self, output_shape: int | Sequence[int], transforms: int = 4, width: int = 64,
                 depth: int = 2, bins: int = 8) -> None:
        super().__init__()
        zuko = import_zuko()
        shape = as_shape(output_shape)
        if len(shape) != 1 or shape[0] < 2:
            raise ValueError(f"a flow generator needs vector data of dimension >= 2, got shape "
                             f"{shape}")
        for name, value in (("transforms", transforms), ("width", width), ("depth", depth),
                            ("bins", bins)):
            check_positive_int(name, value)
        self.output_shape = shape
        self.latent_dim = shape[0]
        self.flow = zuko.flows.NSF(shape[0], transforms=transforms, bins=bins, passes=2,
                                   hidden_features=[width] * depth)

    def _generate(self, z: Tensor) -> Tensor:
        return self.flow().transform.inv(z)

    def log_prob(self, x: Tensor) -> Tensor:
        """``log g(x)`` of each row, shape ``(B,)``."""
        return self.flow().log_prob(x)
