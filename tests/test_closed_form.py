"""Closed-form energy gradients (ebmlab.energies.closed_form): the same numbers as autograd,
the same chains, and autograd wherever the closed form does not apply."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ebmlab.energies import ConvEnergy, GaussianReference, MLPEnergy, closed_form
from ebmlab.energies.closed_form import autograd_energy_and_grad, plan
from ebmlab.methods.base import sample_with_diagnostics
from ebmlab.samplers import MALA, Langevin, MaskedEnergy, energy_and_grad

ACTIVATIONS = ["silu", "leaky_relu", "elu", "tanh", "softplus", "relu"]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def by_autograd(energy, x):
    with closed_form.disabled():
        return energy_and_grad(energy, x)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mlp_gradient_is_autograds_bit_for_bit(activation):
    torch.manual_seed(0)
    energy = MLPEnergy(3, 16, 3, activation=activation)
    x = 2 * torch.randn(64, 3)
    assert plan(energy, energy.net, nn.Linear, x) is not None  # the closed form applies
    u0, g0 = autograd_energy_and_grad(energy, x)
    assert float(g0.abs().max()) > 1e-3  # a gradient worth comparing
    for ctx in (torch.no_grad(), torch.enable_grad()):  # parameters require grad here
        with ctx:
            u, g = energy.energy_and_grad(x)
        assert not u.requires_grad and not g.requires_grad
        assert torch.equal(u, u0) and torch.equal(g, g0)
    # (B, *shape) chains with dim entries: the gradient keeps the chains' shape
    u, g = energy.energy_and_grad(x.view(64, 3, 1))
    assert g.shape == (64, 3, 1) and torch.equal(g.view(64, 3), g0)


def test_mlp_gradient_matches_a_closed_form_by_hand():
    """U(x) = w2·tanh(W1 x + b1) + c: ∇U = W1ᵀ (w2 ⊙ (1 − tanh²(W1 x + b1)))."""
    torch.manual_seed(1)
    energy = MLPEnergy(2, 5, 1, activation="tanh")
    lin, head = energy.net[0], energy.net[2]
    x = torch.randn(7, 2, dtype=torch.float64)
    energy.double()
    t = torch.tanh(x @ lin.weight.T + lin.bias)
    u_hand = t @ head.weight[0] + head.bias
    g_hand = (head.weight[0] * (1 - t**2)) @ lin.weight
    u, g = energy.energy_and_grad(x)
    torch.testing.assert_close(u, u_hand, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g, g_hand, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_conv_gradient_is_autograds_up_to_rounding(activation):
    torch.manual_seed(0)
    energy = ConvEnergy(2, channels=8, n_blocks=3, activation=activation)
    x = torch.randn(6, 2, 12, 12)
    assert plan(energy, energy.features, nn.Conv2d, x, energy.head) is not None
    u0, g0 = autograd_energy_and_grad(energy, x)
    with torch.no_grad():
        u, g = energy.energy_and_grad(x)
    assert g.shape == x.shape
    scale = float(g0.abs().max())
    assert scale > 1e-5
    torch.testing.assert_close(u, u0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g, g0, rtol=1e-4, atol=1e-5 * scale)


def test_reference_adds_its_own_gradient():
    torch.manual_seed(0)
    energy = GaussianReference(MLPEnergy(2, 16, 2), sd=0.7)
    x = 3 * torch.randn(50, 2)
    u0, g0 = autograd_energy_and_grad(energy, x)
    u, g = energy.energy_and_grad(x)
    assert torch.equal(u, u0)
    torch.testing.assert_close(g, g0, rtol=1e-6, atol=1e-6)
    # the x/sd² term matters: without it the gradients are far apart
    _, g_net = energy.energy.energy_and_grad(x)
    torch.testing.assert_close(g - g_net, x / 0.7**2, rtol=1e-5, atol=1e-5)


class Doubled(MLPEnergy):
    def forward(self, x):
        return 2 * super().forward(x)


@pytest.mark.parametrize("case", ["spectral_norm", "hook", "subclass", "unknown_activation",
                                  "parametrized_later", "global_hook", "disabled"])
def test_falls_back_to_autograd(case):
    torch.manual_seed(0)
    energy = (Doubled if case == "subclass" else MLPEnergy)(
        2, 8, 2, spectral_norm=case == "spectral_norm")
    if case == "unknown_activation":
        energy.net[1] = nn.GELU()
    x = torch.randn(20, 2)
    calls = []
    handle = None
    if case == "hook":  # a hook that changes the output: the fallback must run it
        handle = energy.net[2].register_forward_hook(lambda m, i, o: calls.append(1) or 3 * o)
    if case == "parametrized_later":
        energy.energy_and_grad(x)  # plan made and cached
        nn.utils.parametrizations.weight_norm(energy.net[0])
    if case == "global_hook":
        handle = nn.modules.module.register_module_forward_hook(
            lambda m, i, o: calls.append(1))
    energy.eval()
    try:
        if case == "disabled":
            with closed_form.disabled():
                assert plan(energy, energy.net, nn.Linear, x) is None
                got = energy_and_grad(energy, x)
        else:
            if case != "subclass":  # (a subclass is refused by the energy itself)
                assert plan(energy, energy.net, nn.Linear, x) is None
            got = energy.energy_and_grad(x)
        expected = autograd_energy_and_grad(energy, x)
    finally:
        if handle is not None:
            handle.remove()
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    if case in ("hook", "global_hook"):
        assert calls  # the hooks ran
    if case == "subclass":  # the override is seen: twice the plain network's gradient
        plain = MLPEnergy(2, 8, 2)
        plain.load_state_dict(energy.state_dict())
        torch.testing.assert_close(got[1], 2 * plain.energy_and_grad(x)[1])


def test_langevin_chain_is_the_same_with_and_without_the_closed_form():
    """Same seed, same chain: bit for bit on the MLP, and the chain is the update
    x ← x − s∇U + σξ with autograd's gradient and torch.randn's noise."""
    torch.manual_seed(0)
    energy = GaussianReference(MLPEnergy(2, 32, 2, activation="silu"), 2.0)
    x0 = torch.randn(100, 2)
    s, sigma = 0.05, 0.3
    fast = Langevin(s, sigma).run(energy, x0, 15, generator=gen(3))
    with closed_form.disabled():
        slow = Langevin(s, sigma).run(energy, x0, 15, generator=gen(3))
    torch.testing.assert_close(fast, slow, rtol=1e-6, atol=1e-6)
    g = gen(3)
    x = x0.clone()
    for _ in range(15):
        _, grad = autograd_energy_and_grad(energy, x)
        x = x - s * grad + sigma * torch.randn(x.shape, generator=g)
    torch.testing.assert_close(fast, x, rtol=1e-5, atol=1e-5)
    assert float((fast - x0).abs().mean()) > 0.1  # the chains moved


def test_conv_and_mala_chains_match_autograd():
    torch.manual_seed(0)
    conv = ConvEnergy(1, channels=4, n_blocks=2)
    x0 = torch.randn(8, 1, 10, 10)
    fast = Langevin(0.5, 0.01).run(conv, x0, 5, generator=gen(1))
    with closed_form.disabled():
        slow = Langevin(0.5, 0.01).run(conv, x0, 5, generator=gen(1))
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)
    mlp = MLPEnergy(2, 16, 2)
    y0 = torch.randn(200, 2)
    fast = MALA(0.1).run(mlp, y0, 10, generator=gen(2))
    with closed_form.disabled():
        slow = MALA(0.1).run(mlp, y0, 10, generator=gen(2))
    assert torch.equal(fast, slow)


def test_diagnostics_collect_every_step_without_a_callback():
    """r_t = s · mean over steps of the batch-mean ‖∇U‖ along the chain."""
    torch.manual_seed(0)
    energy = MLPEnergy(2, 16, 2)
    x0 = torch.randn(30, 2)
    s = 0.02
    x, metrics = sample_with_diagnostics(Langevin(s), energy, x0, 6, gen(4))
    g = gen(4)
    y, norms = x0.clone(), []
    for _ in range(6):
        _, grad = autograd_energy_and_grad(energy, y)
        norms.append(float(grad.norm(dim=1).mean()))
        y = y - s * grad + math.sqrt(2 * s) * torch.randn(y.shape, generator=g)
    torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-6)
    assert metrics["r_t"] == pytest.approx(s * sum(norms) / 6, rel=1e-6)


def test_masked_energy_gradient_is_autograds():
    """Completion chains: ∇U at the missing pixels, x_pad − c on the padding coordinates."""
    torch.manual_seed(0)
    energy = GaussianReference(ConvEnergy(1, channels=4, n_blocks=2), 3.0)
    x = torch.randn(5, 1, 6, 6)
    mask = torch.rand(5, 1, 6, 6) < 0.4  # rows with different numbers of missing pixels
    masked = MaskedEnergy(energy, x, mask, pad_center=0.5)
    assert not bool(masked.valid.all())  # there is padding
    z = torch.randn(5, masked.n_missing)
    u0, g0 = autograd_energy_and_grad(masked, z)
    u, g = masked.energy_and_grad(z)
    torch.testing.assert_close(u, u0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g, g0, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(g[~masked.valid], z[~masked.valid] - 0.5)
