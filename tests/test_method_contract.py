"""The method contract, checked for every registered method, and the update contract of the
trainer (each loss to its own parameter group; a group without a loss is not stepped)."""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from ebmlab.checkpoint import load_checkpoint
from ebmlab.config import load_config
from ebmlab.experiment import RunConfig
from ebmlab.methods import METHODS, Method, MethodOptions, MethodSpec, SamplingTarget, StepOutput
from ebmlab.methods.registry import register
from ebmlab.train import Trainer, start_run

SMALL = ["model.width=16", "model.depth=2", "train.batch_size=32", "data.n_train=300",
         "data.n_test=100", "train.progress=false", "train.plot_every=0",
         "train.longrun_factor=1"]
PER_METHOD = {"persistent": ["method.n_steps=3", "method.buffer_size=64"],
              "short_run": ["method.n_steps=3"], "cd": ["method.n_steps=3"],
              "steincd": ["method.sample_steps=3"],
              "steingan": ["generator.width=16", "generator.latent_dim=4"],
              "gebm": ["generator.width=16", "generator.latent_dim=2", "method.energy_steps=1",
                       "method.warmup_energy_steps=1", "method.sample_steps=3",
                       "method.init_samples=100"],
              "flow": ["generator.name=flow", "generator.width=8", "generator.transforms=1"],
              "coopnets": ["generator.width=16", "generator.latent_dim=4", "method.n_steps=3",
                           "method.inference_steps=2"],
              "vals": ["generator.width=16", "generator.latent_dim=4", "encoder.width=16",
                       "method.n_steps=3"],
              "ccoopnets": ["generator.width=16", "generator.latent_dim=4", "method.n_steps=3",
                            "method.inference_steps=2"],
              "cvals": ["generator.width=16", "generator.latent_dim=4", "encoder.width=16",
                        "method.n_steps=3"]}
NEEDS_ZUKO = {"flow"}


def method_config(name: str, *extra: str) -> RunConfig:
    return load_config(RunConfig, overrides=[f"method.name={name}", *SMALL,
                                             *PER_METHOD.get(name, []), *extra])


def test_every_registered_method_has_contract_settings():
    assert set(PER_METHOD) >= set(METHODS) - {"two_player_toy"}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_contract(tmp_path, name):
    if name in NEEDS_ZUKO:
        pytest.importorskip("zuko")
    spec = METHODS[name]
    trainer = start_run(method_config(name), tmp_path / "a")
    assert set(trainer.groups) == set(spec.groups)
    for params in trainer.groups.values():
        assert params and all(isinstance(p, nn.Parameter) for p in params)
    metrics = trainer.train_step()
    for g in spec.groups:  # finite losses for exactly its groups, each stepped
        assert f"loss_{g}" in metrics and f"lr_{g}" in metrics
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    # checkpoint round trip: a fresh trainer restored from it takes the very same next step
    trainer.checkpoint()
    state, _ = load_checkpoint(tmp_path / "a")
    twin = Trainer(method_config(name), tmp_path / "a")
    twin.load_state(state)
    after = trainer.train_step()
    assert twin.train_step() == after
    for (ka, a), (kb, b) in zip(trainer.method.modules().items(),
                                twin.method.modules().items(), strict=True):
        assert ka == kb
        for pa, pb in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
            assert torch.equal(pa, pb)
    # samples have the data's shape
    x = trainer.method.sample(7, rng=torch.Generator().manual_seed(0))
    assert x.shape == (7, *trainer.data.shape) and bool(torch.isfinite(x).all())
    # same seed, same step
    again = start_run(method_config(name), tmp_path / "b")
    first = start_run(method_config(name), tmp_path / "c")
    assert again.train_step() == first.train_step()


# -- the update contract -----------------------------------------------------------------


class Critic(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


@dataclass
class TwoPlayerOptions(MethodOptions):
    energy_every: int = 1
    base_every: int = 1


class TwoPlayer(Method):
    """A KALE-like game: the energy ascends F(E, G), the base descends it, in one graph
    (G(z) is not detached in the energy's loss), so a summed backward cancels the energy's
    gradient exactly. ``base_every`` > 1 leaves the base out of most iterations."""

    name = "two_player_toy"

    def __init__(self, options: TwoPlayerOptions) -> None:
        self.energy, self.base = Critic(), nn.Linear(2, 2)
        self.options, self.calls, self.last_objective = options, 0, None

    def modules(self) -> dict[str, nn.Module]:
        return {"energy": self.energy, "base": self.base}

    def objective(self, batch: torch.Tensor, rng: torch.Generator | None) -> torch.Tensor:
        z = torch.randn(batch.shape, generator=rng)
        return -self.energy(batch).mean() - torch.exp(-self.energy(self.base(z))).mean() + 1

    def step(self, batch, rng=None) -> StepOutput:
        f = self.objective(batch, rng)
        self.last_objective = f
        losses = {}
        if self.calls % self.options.energy_every == 0:
            losses["energy"] = -f
        if self.calls % self.options.base_every == 0:
            losses["base"] = f
        self.calls += 1
        return StepOutput(losses=losses)

    def target(self) -> SamplingTarget | None:
        return None


@contextlib.contextmanager
def registered_two_player():
    spec = MethodSpec("two_player_toy", TwoPlayerOptions, lambda ctx, o: TwoPlayer(o),
                      help="test only", groups=("energy", "base"))
    register(spec)
    try:
        yield spec
    finally:
        del METHODS["two_player_toy"]


def test_each_loss_reaches_only_its_own_group(tmp_path):
    with registered_two_player():
        cfg = load_config(RunConfig, overrides=["method.name=two_player_toy", *SMALL])
        trainer = start_run(cfg, tmp_path / "r")
        before = copy.deepcopy(trainer.method)
        rng = torch.Generator().manual_seed(0)
        rng.set_state(trainer.rng.get_state())
        trainer.train_step()
    # replay the step on a copy taken before it: same batch, same latent draws
    idx = torch.randint(0, trainer.data.train.shape[0], (cfg.train.batch_size,), generator=rng)
    f = before.objective(trainer.data.train[idx], rng)
    params = list(before.energy.parameters())
    own = torch.autograd.grad(-f, params, retain_graph=True)
    summed = torch.autograd.grad(-f + f, params, materialize_grads=True, retain_graph=True)
    base_own = torch.autograd.grad(f, list(before.base.parameters()))

    def norm(grads) -> float:
        return float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads])))

    assert norm(summed) < 1e-6 < 1e-2 < norm(own)  # a summed backward would cancel it
    for g, p in zip(own, trainer.groups["energy"], strict=True):
        torch.testing.assert_close(p.grad, g)
    for g, p in zip(base_own, trainer.groups["base"], strict=True):
        torch.testing.assert_close(p.grad, g)


def test_group_without_a_loss_is_not_stepped(tmp_path):
    with registered_two_player():
        cfg = load_config(RunConfig, overrides=["method.name=two_player_toy", *SMALL,
                                                "method.base_every=2"])
        trainer = start_run(cfg, tmp_path / "r")
        trainer.train_step()  # both groups step (call 0)
        base = [p.detach().clone() for p in trainer.groups["base"]]
        opt_state = {k: v.clone() for k, v in
                     trainer.optimizers["base"].state[trainer.groups["base"][0]].items()}
        energy = [p.detach().clone() for p in trainer.groups["energy"]]
        metrics = trainer.train_step()  # call 1: the energy only
    assert "loss_base" not in metrics and "loss_energy" in metrics
    for a, b in zip(base, trainer.groups["base"], strict=True):
        assert torch.equal(a, b)
    now = trainer.optimizers["base"].state[trainer.groups["base"][0]]
    assert all(torch.equal(opt_state[k], now[k]) for k in opt_state)
    assert any(not torch.equal(a, b) for a, b in zip(energy, trainer.groups["energy"],
                                                      strict=True))


def test_per_group_optimiser_settings(tmp_path):
    cfg = method_config("steingan", "optim.generator.lr=2e-4", "optim.generator.optimizer=sgd",
                        "optim.energy.grad_clip=0.5", "train.lr_schedule=constant")
    trainer = start_run(cfg, tmp_path / "r")
    assert isinstance(trainer.optimizers["generator"], torch.optim.SGD)
    assert isinstance(trainer.optimizers["energy"], torch.optim.Adam)
    metrics = trainer.train_step()
    assert metrics["lr_generator"] == pytest.approx(2e-4)
    assert metrics["lr_energy"] == pytest.approx(cfg.train.lr)


def test_amortized_negatives_are_exempt_from_the_d_st_rule(tmp_path):
    # SteinGAN's generator lags the energy, so its d_st stays one-sided by design (its
    # digits preset holds d_st ≈ +9 for 6000 iterations and ends with test LL −10.2).
    steingan = start_run(method_config("steingan"), tmp_path / "gan")
    cd = start_run(method_config("cd"), tmp_path / "cd")
    assert not steingan.monitor.check_d_st and cd.monitor.check_d_st
