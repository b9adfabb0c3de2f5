"""Sampling hygiene: every sampler run puts the modules it touches in eval mode with
frozen parameters, and restores each module's own ``training`` flag and each
parameter's ``requires_grad`` afterwards (also when the run raises)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ebmlab.samplers import HMC, MALA, SVGD, AniLA, Langevin, NonFiniteError, UnderdampedLangevin
from ebmlab.samplers.base import frozen, modules_of

FACTORIES = {
    "langevin": lambda: Langevin(0.05),
    "anila": lambda: AniLA(0.05, threshold=1.0),
    "mala": lambda: MALA(0.1, adapt_steps=2),
    "hmc": lambda: HMC(0.1, n_leapfrog=2),
    "underdamped": lambda: UnderdampedLangevin(0.1),
    "svgd": lambda: SVGD(0.1),
    "svgd_features": lambda: SVGD(0.1, features=lambda x: torch.tanh(x)),
}


class BNEnergy(nn.Module):
    """``U(x) = head(BN(tanh(lin(x))))``: batch-norm inside the energy."""

    def __init__(self, dim: int = 2) -> None:
        super().__init__()
        self.lin = nn.Linear(dim, 8)
        self.bn = nn.BatchNorm1d(8)
        self.head = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.bn(torch.tanh(self.lin(x)))).squeeze(1) + 0.5 * x.square().sum(1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(torch.tanh(self.lin(x)))


def trained_bn_energy() -> BNEnergy:
    e = BNEnergy().double()
    e.train()
    with torch.no_grad():  # move the running statistics away from their defaults
        for _ in range(3):
            e(torch.randn(64, 2, dtype=torch.float64) * 2 + 1)
    return e


def snapshot(m: nn.Module) -> dict[str, object]:
    return {
        "state": {k: v.clone() for k, v in m.state_dict().items()},
        "training": {n: s.training for n, s in m.named_modules()},
        "requires_grad": {n: p.requires_grad for n, p in m.named_parameters()},
    }


def assert_same(m: nn.Module, before: dict[str, object]) -> None:
    after = snapshot(m)
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    for k, v in before["state"].items():  # type: ignore[union-attr]
        assert torch.equal(after["state"][k], v), k  # type: ignore[index]
    assert all(p.grad is None for p in m.parameters())


def mixed_flags(e: BNEnergy) -> BNEnergy:
    """Train mode, but one submodule already in eval and one parameter already frozen."""
    e.train()
    e.bn.eval()
    e.head.weight.requires_grad_(False)
    return e


@pytest.mark.parametrize("kind", FACTORIES)
def test_batchnorm_stats_untouched_and_flags_restored(kind):
    e = mixed_flags(trained_bn_energy())
    before = snapshot(e)
    seen = []

    def callback(i, state, info):
        seen.append((all(not m.training for m in e.modules()),
                     all(not p.requires_grad for p in e.parameters())))

    x = FACTORIES[kind]().run(e, torch.randn(16, 2, dtype=torch.float64), 5,
                              generator=torch.Generator().manual_seed(0), callback=callback)
    assert torch.isfinite(x).all()
    assert seen == [(True, True)] * 5  # eval mode and frozen while sampling
    assert_same(e, before)
    assert e.training and not e.bn.training and not e.head.weight.requires_grad
    assert e.lin.weight.requires_grad and e.head.bias.requires_grad


def test_batch_statistics_do_not_couple_chains():
    # Gradient descent (no noise): chain 0 run alone must equal chain 0 run among 15
    # others. In train mode batch-norm would couple them (and fail on a single chain).
    e = trained_bn_energy()
    x0 = torch.randn(16, 2, dtype=torch.float64)
    together = Langevin(0.05, noise_scale=0.0).run(e, x0, 10)
    alone = Langevin(0.05, noise_scale=0.0).run(e, x0[:1], 10)
    torch.testing.assert_close(alone, together[:1], rtol=0, atol=1e-12)
    assert e.training


def test_generator_inside_the_energy_keeps_its_running_stats():
    # E(G(z)) written as a lambda: both modules are found through its closure.
    gen_net = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 2))
    gen_net = gen_net.double().train()
    energy = trained_bn_energy()
    with torch.no_grad():
        gen_net(torch.randn(32, 3, dtype=torch.float64))
    g_before, e_before = snapshot(gen_net), snapshot(energy)

    def latent_energy(z):
        return energy(gen_net(z)) + 0.5 * z.square().sum(1)

    assert {id(m) for m in modules_of(latent_energy)} == {id(energy), id(gen_net)}
    for kind in ("langevin", "mala", "hmc"):
        FACTORIES[kind]().run(latent_energy, torch.randn(8, 3, dtype=torch.float64), 4,
                              generator=torch.Generator().manual_seed(1))
    assert_same(gen_net, g_before)
    assert_same(energy, e_before)


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("where", ["energy", "callback", "non_finite"])
def test_flags_restored_after_an_exception_mid_run(where):
    e = mixed_flags(trained_bn_energy())
    before = snapshot(e)
    calls = {"n": 0}

    def energy(x):
        calls["n"] += 1
        if where == "energy" and calls["n"] == 3:
            raise Boom
        u = e(x)
        return u * torch.nan if where == "non_finite" and calls["n"] >= 3 else u

    def callback(i, state, info):
        if where == "callback" and i == 2:
            raise Boom

    with pytest.raises(NonFiniteError if where == "non_finite" else Boom):
        Langevin(0.05).run(energy, torch.randn(8, 2, dtype=torch.float64), 10,
                           callback=callback)
    assert_same(e, before)


def test_svgd_direction_alone_is_hygienic():
    # Methods call SVGD.direction directly (SteinCD negatives), outside drive.
    e = mixed_flags(trained_bn_energy())
    before = snapshot(e)
    svgd = SVGD(0.1, features=e.features)
    x = torch.randn(12, 2, dtype=torch.float64)
    phi, u, g = svgd.direction(e, x)
    assert phi.shape == x.shape and torch.isfinite(phi).all()
    assert_same(e, before)
    # The same direction from the same particles, one particle's value is not changed
    # by batch statistics: eval-mode energies per particle.
    e_eval = trained_bn_energy().eval()
    e_eval.load_state_dict(e.state_dict())
    torch.testing.assert_close(u, e_eval(x).detach(), rtol=0, atol=1e-12)


def test_frozen_nests_and_restores_on_error():
    e = mixed_flags(trained_bn_energy())
    before = snapshot(e)
    with pytest.raises(Boom), frozen(e):
        with frozen(e.features, e):
            assert not any(m.training for m in e.modules())
        assert not any(p.requires_grad for p in e.parameters())
        raise Boom
    assert_same(e, before)
    with frozen(lambda x: x, None):  # nothing to freeze
        pass
