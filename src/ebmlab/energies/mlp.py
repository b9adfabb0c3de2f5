"""Neural energies: an MLP for vectors and a small ConvNet for images."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "silu": nn.SiLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "relu": nn.ReLU,  # generators; a ReLU energy has a piecewise-constant gradient field
}


def make_activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name]()


def _maybe_sn(layer: nn.Module, spectral_norm: bool) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(layer) if spectral_norm else layer


class MLPEnergy(nn.Module):
    """``U(x) = MLP(x)`` for vectors: ``(B, dim) -> (B,)``.

    ``depth`` hidden layers of ``width`` units; optional spectral normalisation of
    every linear layer (bounds the Lipschitz constant, a common EBM stabiliser).
    """

    def __init__(
        self,
        dim: int,
        width: int = 128,
        depth: int = 2,
        activation: str = "silu",
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        for name, v in (("dim", dim), ("width", width), ("depth", depth)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        self.dim = dim
        layers: list[nn.Module] = []
        d_in = dim
        for _ in range(depth):
            linear = _maybe_sn(nn.Linear(d_in, width), spectral_norm)
            layers += [linear, make_activation(activation)]
            d_in = width
        layers.append(_maybe_sn(nn.Linear(d_in, 1), spectral_norm))
        self.net = nn.Sequential(*layers)

    def _rows(self, x: Tensor) -> Tensor:
        """``(B, *shape)`` with ``prod(shape) = dim`` as rows ``(B, dim)``."""
        if x.dim() > 2:
            x = x.flatten(1)
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"MLPEnergy expects shape (B, {self.dim}) (or (B, *shape) with "
                             f"{self.dim} entries), got {tuple(x.shape)}")
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self._rows(x)).squeeze(1)

    def features(self, x: Tensor) -> Tensor:
        """The last hidden layer ``(B, width)``, e.g. for an SVGD kernel on features."""
        return self.net[:-1](self._rows(x))


class ConvEnergy(nn.Module):
    """A small ConvNet energy for images ``(B, C, H, W) -> (B,)``.

    Strided 3×3 convolutions (``channels``, doubling each block), a global sum
    pool and a linear head; in the style of the short-run EBM image nets.
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: int = 32,
        n_blocks: int = 3,
        activation: str = "leaky_relu",
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, c = in_channels, channels
        for i in range(n_blocks):
            stride = 1 if i == 0 else 2
            layers += [
                _maybe_sn(nn.Conv2d(c_in, c, 3, stride=stride, padding=1), spectral_norm),
                make_activation(activation),
            ]
            c_in, c = c, c * 2
        self.features = nn.Sequential(*layers)
        self.head = _maybe_sn(nn.Linear(c_in, 1), spectral_norm)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"ConvEnergy expects shape (B, C, H, W), got {tuple(x.shape)}")
        h = self.features(x).mean(dim=(2, 3))
        return self.head(h).squeeze(1)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


