"""The SteinGAN image generator: 2 fully connected layers, then 2 transposed convolutions."""

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


def _deconv(c_in: int, c_out: int) -> nn.ConvTranspose2d:
    """5×5, stride 2, padding 2, output padding 1: exactly doubles H and W."""
    return nn.ConvTranspose2d(c_in, c_out, 5, stride=2, padding=2, output_padding=1)


class DeconvGenerator(Generator):
    """``(B, latent_dim) -> (B, C, H, W)``, the generator of SteinGAN (Liu & Wang, Sec. 5.1).

    ``ξ → FC(hidden) → FC(2·channels · H/4 · W/4)`` reshaped to a ``(2·channels, H/4, W/4)``
    map, then ``5×5`` transposed convolutions (stride 2) to ``(channels, H/2, W/2)`` and
    ``(C, H, W)``. ``H`` and ``W`` must be divisible by 4 (8×8 starts from 2×2, 28×28
    from 7×7, 32×32 from 8×8). Optional batch norm after every layer but the last
    (off by default, so outputs do not depend on the batch); ``output_activation`` is
    ``None``, ``"sigmoid"`` or ``"tanh"``.
    """

    def __init__(
        self,
        latent_dim: int,
        output_shape: Sequence[int] = (1, 28, 28),
        channels: int = 64,
        hidden: int = 512,
        activation: str = "relu",
        output_activation: str | None = None,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        shape = as_shape(output_shape)
        if len(shape) != 3:
            raise ValueError(f"output_shape must be (C, H, W), got {output_shape!r}")
        c_out, height, width = shape
        if height % 4 or width % 4:
            raise ValueError(
                f"DeconvGenerator doubles the spatial size twice, so H and W must be divisible "
                f"by 4; got {height}×{width}"
            )
        self.output_shape = shape
        check_positive_int("channels", channels)
        check_positive_int("hidden", hidden)
        self.start_shape = (2 * channels, height // 4, width // 4)
        n_start = 2 * channels * (height // 4) * (width // 4)

        def bn1(n: int) -> list[nn.Module]:
            return [nn.BatchNorm1d(n)] if batch_norm else []

        self.fc = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            *bn1(hidden),
            make_activation(activation),
            nn.Linear(hidden, n_start),
            *bn1(n_start),
            make_activation(activation),
        )
        self.deconv = nn.Sequential(
            _deconv(2 * channels, channels),
            *([nn.BatchNorm2d(channels)] if batch_norm else []),
            make_activation(activation),
            _deconv(channels, c_out),
            make_output_activation(output_activation),
        )

    def _generate(self, z: Tensor) -> Tensor:
        h = self.fc(z).reshape(z.shape[0], *self.start_shape)
        return self.deconv(h)
