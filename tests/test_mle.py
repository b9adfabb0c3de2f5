"""Maximum likelihood (Anatomy): the step on a quadratic energy — loss value, penalty sign,
where chains start, data noise, invariant tuning — and a short learning run per regime
whose exact KL must drop."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ebmlab.chains import NoiseInit, ReplayBuffer
from ebmlab.config import ConfigError, load_config
from ebmlab.experiment import RunConfig
from ebmlab.methods import MaximumLikelihood
from ebmlab.samplers import Langevin
from ebmlab.train import Trainer, start_run


class Quadratic(nn.Module):
    """U(x) = ½·a·‖x − m‖² with a learnable precision a."""

    def __init__(self, a: float = 1.0, m: float = 0.0) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a, dtype=torch.float64))
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.a * (x - self.m).square().sum(1)


FROZEN = Langevin(step_size=1e-12, noise_scale=0.0)  # chains stay where they start


def method(regime: str, **kw) -> MaximumLikelihood:
    noise = NoiseInit((2,), kind="uniform", low=-1.0, high=1.0, dtype=torch.float64)
    chains = {"short_run": noise, "cd": None,
              "persistent": ReplayBuffer(noise, capacity=50, reinit_prob=0.0)}[regime]
    return MaximumLikelihood(kw.pop("energy", Quadratic()), kw.pop("sampler", FROZEN), chains,
                             regime=regime, n_steps=1, noise=noise, **kw)


BATCH = torch.full((40, 2), 10.0, dtype=torch.float64)  # data far from the noise box


@pytest.mark.parametrize("regime", ["short_run", "cd", "persistent"])
def test_loss_value_and_where_chains_start(regime):
    m = method(regime, energy_penalty=0.1)
    out = m.step(BATCH, torch.Generator().manual_seed(0))
    x_neg = out.negatives
    if regime == "cd":
        torch.testing.assert_close(x_neg, BATCH)  # CD chains start at the data
    else:
        assert x_neg.abs().max() <= 1.0  # from the noise box, not from the data
    u_pos, u_neg = m.energy(BATCH), m.energy(x_neg)
    expected = (u_pos.mean() - u_neg.mean()
                + 0.1 * (u_pos.square().mean() + u_neg.square().mean()))
    torch.testing.assert_close(out.losses["energy"], expected)
    assert out.metrics["d_st"] == pytest.approx(float(u_pos.mean() - u_neg.mean()))
    # the gradient lowers the data's energy relative to the negatives': d loss / d a > 0 here
    out.losses["energy"].backward()
    assert float(m.energy.a.grad) > 0


def test_penalty_pulls_energies_towards_zero():
    # Data and negatives at the same place (CD with frozen chains): d_st = 0, so the only
    # gradient is the penalty's, which must shrink |U| (a > 0, U > 0: d/da > 0).
    m = method("cd", energy_penalty=1.0)
    out = m.step(BATCH, None)
    assert out.metrics["d_st"] == pytest.approx(0.0, abs=1e-8)
    out.losses["energy"].backward()
    assert float(m.energy.a.grad) > 0
    m2 = method("cd", energy_penalty=0.0)
    m2.step(BATCH, None).losses["energy"].backward()
    assert float(m2.energy.a.grad) == pytest.approx(0.0, abs=1e-8)


def test_persistent_chains_come_back_from_the_buffer():
    m = method("persistent", sampler=Langevin(step_size=0.5, noise_scale=0.0),
               energy=Quadratic(1.0, m=5.0))
    first = m.step(BATCH[:50], torch.Generator().manual_seed(0)).negatives  # fills the buffer
    second = m.step(BATCH[:50], torch.Generator().manual_seed(1)).negatives
    # one gradient step of size ½ halves the distance to the mode: chains that continue
    # from the buffer end closer to m = 5 than fresh noise does after one step
    d1, d2 = (first - 5).abs().mean(), (second - 5).abs().mean()
    assert (first - 5).abs().max() <= 3.0 and d2 < 0.75 * d1, (d1, d2)


def test_data_noise_perturbs_the_positives_and_cd_starts_there():
    m = method("cd", data_noise=0.5)
    out = m.step(BATCH, torch.Generator().manual_seed(0))
    moved = (out.negatives - BATCH).std()
    assert 0.4 < float(moved) < 0.6  # chains start at the noised data
    assert out.metrics["energy_pos"] != pytest.approx(float(m.energy(BATCH).mean()))


def test_invariant_tuning_scales_the_learning_rate_by_the_step(tmp_path):
    assert method("cd", invariant_tuning=True, sampler=Langevin(0.01)).lr_scale("energy") == 0.01
    assert method("cd", sampler=Langevin(0.01)).lr_scale("energy") == 1.0
    cfg = load_config(RunConfig, overrides=["method.name=persistent",
                                            "method.invariant_tuning=true",
                                            "sampler.step_size=0.004", "train.lr=0.5",
                                            "train.lr_schedule=constant", "data.n_train=100",
                                            "data.n_test=20", "train.progress=false"])
    trainer = start_run(cfg, tmp_path / "r")
    assert trainer.train_step()["lr_energy"] == pytest.approx(0.5 * 0.004)


# -- learning, per regime ----------------------------------------------------------------------


@pytest.mark.parametrize("regime, overrides, below", [
    # measured (seed 0, 400 iterations): KL 1.82 -> short_run 1.1, cd 0.09, persistent 0.33
    ("short_run", ["sampler.noise_scale=0.01", "sampler.step_size=0.02",
                   "method.init=gaussian", "method.init_scale=1.0"], 1.5),
    ("cd", ["method.n_steps=5"], 0.3),
    ("persistent", [], 0.8),
])
def test_each_regime_learns(tmp_path, regime, overrides, below):
    cfg = load_config(RunConfig, overrides=[
        f"method.name={regime}", *overrides, "train.iterations=400", "train.progress=false",
        "train.plot_every=0", "data.n_train=4000", "data.n_test=1000",
        "train.longrun_factor=1", "train.divergence_check=false"])
    trainer = start_run(cfg, tmp_path / "r")
    before = trainer.evaluate()["kl"]
    for _ in range(cfg.train.iterations):
        trainer.train_step()
    after = trainer.evaluate()["kl"]
    assert before > 1.5 and after < below, (before, after)


def test_target_accept_adapts_a_metropolis_step_between_iterations():
    from ebmlab.samplers import MALA

    m = method("persistent", sampler=MALA(step_size=5.0), energy=Quadratic(1.0),
               target_accept=0.6, adapt_rate=0.2)
    rng = torch.Generator().manual_seed(0)
    m.n_steps = 5
    accepts = []
    for _ in range(150):
        accepts.append(m.step(BATCH[:50] * 0, rng).metrics["accept"])
    assert m.sampler.step_size < 5.0  # a far too large step came down
    assert abs(sum(accepts[-50:]) / 50 - 0.6) < 0.1
    state = m.state_dict()
    twin = method("persistent", sampler=MALA(step_size=5.0), energy=Quadratic(1.0),
                  target_accept=0.6)
    twin.load_state_dict(state)
    assert twin.sampler.step_size == m.sampler.step_size
    assert method("cd", target_accept=0.6).target_accept is None  # ULA: a fixed step


def test_gaussian_reference_term(tmp_path):
    from ebmlab.energies import GaussianReference, MLPEnergy

    net = MLPEnergy(2, width=8, depth=1)
    energy = GaussianReference(net, sd=2.0)
    x = torch.randn(5, 2)
    torch.testing.assert_close(energy(x), net(x) + x.square().sum(1) / 8.0)
    cfg = load_config(RunConfig, overrides=["model.reference_sd=3", "data.n_train=100",
                                            "data.n_test=20", "train.progress=false"])
    trainer = start_run(cfg, tmp_path / "r")
    assert isinstance(trainer.method.energy, GaussianReference)
    assert load_config(RunConfig, overrides=["model.name=rbm"]).model.reference_sd is None


def test_buffer_as_large_as_the_chains_is_enough():
    load_config(RunConfig, overrides=["method.name=persistent", "method.buffer_size=200",
                                      "train.batch_size=200"])
    with pytest.raises(ConfigError, match="buffer_size must be >="):
        Trainer(load_config(RunConfig, overrides=["method.name=persistent",
                                                  "method.buffer_size=199",
                                                  "train.batch_size=200", "data.n_train=300",
                                                  "data.n_test=50"]), None)
    Trainer(load_config(RunConfig, overrides=["method.name=persistent", "method.buffer_size=200",
                                              "train.batch_size=200", "data.n_train=300",
                                              "data.n_test=50"]), None)
