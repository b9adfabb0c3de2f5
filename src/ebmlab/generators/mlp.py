"""A fully connected generator ``G(ξ) = MLP(ξ)``, reshaped to ``output_shape``."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ebmlab.generators.base import (
    Generator,
    as_shape,
    check_positive_int,
    make_activation,
    make_output_activation,
)


class MLPGenerator(Generator):
    """``(B, latent_dim) -> (B, *output_shape)``: ``depth`` hidden layers of ``width`` units.

    ``output_shape`` is an int ``d`` (vectors) or a shape such as ``(1, 28, 28)``;
    ``activation`` is a name accepted by ``energies.mlp.make_activation`` (relu, ...);
    ``output_activation`` is ``None``, ``"sigmoid"`` or ``"tanh"``; optional batch
    norm after each hidden linear layer.
    """

    def __init__(
        self,
        latent_dim: int,
        output_shape: int | Sequence[int],
        width: int = 128,
        depth: int = 2,
        activation: str = "leaky_relu",
        output_activation: str | None = None,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        self.output_shape = as_shape(output_shape)
        check_positive_int("width", width)
        check_positive_int("depth", depth)
        layers: list[nn.Module] = []
        d_in = latent_dim
        for _ in range(depth):
            layers.append(nn.Linear(d_in, width))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(make_activation(activation))
            d_in = width
        layers += [nn.Linear(d_in, self.output_dim), make_output_activation(output_activation)]
        self.net = nn.Sequential(*layers)

    def _generate(self, z: Tensor) -> Tensor:
        return self.net(z)
