"""Generators G(ξ; η): shapes, sampling, gradients, argument checks."""

import pytest
import torch
from torch import nn

from ebmlab.generators import DeconvGenerator, Generator, MLPGenerator


@pytest.mark.parametrize(
    ("output_shape", "expected"),
    [(2, (2,)), ((5,), (5,)), ((1, 8, 8), (1, 8, 8)), ([3, 4, 6], (3, 4, 6))],
)
@pytest.mark.parametrize("batch_norm", [False, True])
def test_mlp_generator_shapes(output_shape, expected, batch_norm):
    g = MLPGenerator(3, output_shape, width=16, depth=3, batch_norm=batch_norm)
    assert isinstance(g, Generator)
    assert g.latent_dim == 3 and g.output_shape == expected
    x = g(torch.randn(4, 3))
    assert x.shape == (4, *expected)
    assert g.sample(5).shape == (5, *expected)
    n_linear = sum(isinstance(m, nn.Linear) for m in g.modules())
    assert n_linear == 4


@pytest.mark.parametrize(
    ("output_shape", "start"),
    [((1, 8, 8), (2, 2)), ((1, 28, 28), (7, 7)), ((3, 32, 32), (8, 8)), ((2, 8, 12), (2, 3))],
)
@pytest.mark.parametrize("batch_norm", [False, True])
def test_deconv_generator_shapes(output_shape, start, batch_norm):
    g = DeconvGenerator(10, output_shape, channels=8, hidden=32, batch_norm=batch_norm)
    assert g.latent_dim == 10 and g.output_shape == tuple(output_shape)
    assert g.start_shape == (16, *start)
    x = g(torch.randn(3, 10))
    assert x.shape == (3, *output_shape)
    g.eval()  # batch norm in eval mode handles a batch of one
    assert g.sample(1).shape == (1, *output_shape)
    # The SteinGAN shape: 2 fully connected layers, then 2 transposed 5×5 convolutions.
    assert sum(isinstance(m, nn.Linear) for m in g.modules()) == 2
    deconvs = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(deconvs) == 2 and all(m.kernel_size == (5, 5) for m in deconvs)


@pytest.mark.parametrize(
    "make",
    [
        lambda act: MLPGenerator(2, 6, width=8, output_activation=act),
        lambda act: DeconvGenerator(2, (1, 4, 4), channels=4, hidden=8, output_activation=act),
    ],
)
def test_output_activations(make):
    torch.manual_seed(0)
    z = 50 * torch.randn(64, 2)  # large inputs: unbounded outputs would leave [-1, 1]
    x = make("sigmoid")(z)
    assert ((x >= 0) & (x <= 1)).all()
    x = make("tanh")(z)
    assert ((x >= -1) & (x <= 1)).all()
    assert (make(None)(z).abs() > 1).any()
    with pytest.raises(ValueError, match="output_activation"):
        make("softmax")


@pytest.mark.parametrize(
    "g",
    [MLPGenerator(4, (1, 2, 3), width=8), DeconvGenerator(4, (1, 8, 8), channels=4, hidden=8)],
    ids=["mlp", "deconv"],
)
def test_sample_is_deterministic_given_a_generator(g):
    a = g.sample(6, generator=torch.Generator().manual_seed(7))
    b = g.sample(6, generator=torch.Generator().manual_seed(7))
    c = g.sample(6, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    x, z = g.sample(6, generator=torch.Generator().manual_seed(7), return_latent=True)
    assert z.shape == (6, 4)
    torch.testing.assert_close(z, torch.randn(6, 4, generator=torch.Generator().manual_seed(7)))
    torch.testing.assert_close(x, a, rtol=0, atol=0)
    torch.testing.assert_close(g(z), x)


def test_sample_follows_module_dtype():
    g = MLPGenerator(3, 2, width=8).double()
    x, z = g.sample(4, return_latent=True)
    assert x.dtype == z.dtype == torch.float64
    d = DeconvGenerator(3, (1, 4, 4), channels=2, hidden=4).double()
    assert d.sample(2).dtype == torch.float64
    assert g.output_dim == 2 and d.output_dim == 16


@pytest.mark.parametrize(
    "g",
    [
        MLPGenerator(4, 5, width=8, batch_norm=True),
        DeconvGenerator(4, (3, 8, 8), channels=4, hidden=8, batch_norm=True,
                        output_activation="tanh"),
    ],
    ids=["mlp", "deconv"],
)
def test_gradients_flow_to_every_parameter(g):
    x = g.sample(8)
    assert x.requires_grad
    x.square().mean().backward()
    for name, p in g.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="divisible by 4"):
        DeconvGenerator(4, (1, 30, 30))
    with pytest.raises(ValueError, match="divisible by 4"):
        DeconvGenerator(4, (1, 8, 10))
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        DeconvGenerator(4, (28, 28))
    with pytest.raises(ValueError, match="output_shape"):
        DeconvGenerator(4, (1, 0, 8))
    with pytest.raises(ValueError, match="output_shape"):
        MLPGenerator(4, (2, -1))
    with pytest.raises(ValueError, match="output_shape"):
        MLPGenerator(4, ())
    with pytest.raises(ValueError, match="latent_dim"):
        MLPGenerator(0, 3)
    with pytest.raises(ValueError, match="width"):
        MLPGenerator(2, 3, width=0)
    with pytest.raises(ValueError, match="activation"):
        MLPGenerator(2, 3, activation="nope")
    g = MLPGenerator(3, 2, width=4)
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        g(torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        g(torch.randn(3))
    with pytest.raises(ValueError, match="n must be"):
        g.sample(-1)
    assert isinstance(MLPGenerator(2, 3, activation="relu").net[1], nn.ReLU)
