"""Generalized EBMs (``method.name = "gebm"``): the KALE bound and its closed form, the base
gradient, latent sampling against closed-form Gaussian posteriors, importance-sampled
log Z, the schedule, resume, the lifted data sets and the CLI end to end."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from ebmlab.cli import main
from ebmlab.config import ConfigError, load_config
from ebmlab.data.lifted import LiftMap, lift, parse_lifted
from ebmlab.energies import MLPEnergy
from ebmlab.experiment import RunConfig, load_data
from ebmlab.generators import Generator, MLPGenerator
from ebmlab.methods.gebm import GEBM, GEBMDensity, LatentEnergy
from ebmlab.run import load_run
from ebmlab.samplers import HMC, MALA, IndependentMH, Langevin, UnderdampedLangevin
from ebmlab.train import resume_run, start_run

Z = 4.5  # Monte-Carlo standard errors
F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class LinearEnergy(nn.Module):
    """``E(x) = −aᵀx``."""

    def __init__(self, a: Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a.clone())

    def forward(self, x: Tensor) -> Tensor:
        return -(x @ self.a)


class QuadraticEnergy(nn.Module):
    """``E(x) = ½ (x − m)ᵀ P (x − m)``."""

    def __init__(self, m: Tensor, prec: Tensor) -> None:
        super().__init__()
        self.m = nn.Parameter(m.clone())
        self.register_buffer("prec", prec.clone())

    def forward(self, x: Tensor) -> Tensor:
        d = x - self.m
        return 0.5 * ((d @ self.prec) * d).sum(dim=1)


class LinearBase(Generator):
    """``G(z) = A z + b``; with a square ``A`` its density is ``N(b, A Aᵀ)``."""

    def __init__(self, a: Tensor, b: Tensor) -> None:
        super().__init__()
        self.latent_dim, self.output_shape = a.shape[1], (a.shape[0],)
        self.a, self.b = nn.Parameter(a.clone()), nn.Parameter(b.clone())

    def _generate(self, z: Tensor) -> Tensor:
        return z @ self.a.T + self.b

    def log_prob(self, x: Tensor) -> Tensor:
        dist = torch.distributions.MultivariateNormal(self.b, scale_tril=torch.linalg.cholesky(
            self.a @ self.a.T))
        return dist.log_prob(x)


def gebm(energy: nn.Module, base: nn.Module, sampler=None, **kw) -> GEBM:
    kw = {"penalty": 0.0, "energy_steps": 1, "warmup_energy_steps": 1, **kw}
    return GEBM(energy, base, sampler or Langevin(0.01), **kw)


# -- the KALE bound -----------------------------------------------------------------------
MU_P = torch.tensor([1.0, 0.5], dtype=F64)
COV = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=F64)
L = torch.linalg.cholesky(COV)
A_OPT = torch.linalg.solve(COV, MU_P)  # Σ⁻¹(μ_P − μ_G), μ_G = 0: E* = −aᵀx is optimal
KL_PG = 0.5 * float(MU_P @ A_OPT)  # KL(N(μ_P, Σ) ‖ N(0, Σ))


def closed_form_f(a: Tensor, c: float) -> float:
    """F(E, c) for E = −aᵀx, P = N(μ_P, Σ), G = N(0, Σ): −E_P[E + c] − E_G[e^{−E−c}] + 1."""
    return float(a @ MU_P) - c - math.exp(-c + 0.5 * float(a @ COV @ a)) + 1


def log_z(a: Tensor) -> float:
    """log E_G[exp(aᵀx)] = ½ aᵀΣa."""
    return 0.5 * float(a @ COV @ a)


@pytest.mark.parametrize("scale, shift", [(1.0, 0.0), (1.0, -0.4), (1.0, 0.5), (0.5, 0.2)])
def test_kale_estimate_matches_its_closed_form(scale, shift):
    a = scale * A_OPT
    c = log_z(a) + shift
    method = gebm(LinearEnergy(a), LinearBase(L, torch.zeros(2, dtype=F64)))
    method.c.data.fill_(c)
    method.c_ready = True
    n = 40000
    x = MU_P + torch.randn(n, 2, generator=gen(1), dtype=F64) @ L.T
    out = method.step(x, gen(2))
    with torch.no_grad():
        terms_p = method.energy(x)
        e_gen = method.energy(out.negatives)
        terms_g = torch.exp(-(e_gen + c))
    se = math.sqrt(float(terms_p.var()) / n + float(terms_g.var()) / n)
    assert abs(out.metrics["kale"] - closed_form_f(a, c)) < Z * se
    # the base's loss is the batch KALE at c = log Ẑ: −mean E(x) − log Ẑ
    log_z_hat = torch.logsumexp(-e_gen, 0) - math.log(n)
    assert float(out.losses["base"].detach()) == pytest.approx(
        float(-terms_p.mean() - log_z_hat), rel=1e-9)


def test_kale_is_a_lower_bound_tight_at_log_z_and_the_optimal_energy():
    cs = np.linspace(-2.0, 3.0, 501)
    for a in (A_OPT, 0.5 * A_OPT, torch.tensor([1.0, -1.0], dtype=F64)):
        values = np.array([closed_form_f(a, c) for c in cs])
        best = cs[values.argmax()]
        assert best == pytest.approx(log_z(a), abs=0.01)  # maximised over c at c = log Z
        # at c = log Z the bound is −E_P[E] − log Z (the GEBM's log-likelihood ratio)
        assert closed_form_f(a, log_z(a)) == pytest.approx(float(a @ MU_P) - log_z(a))
        assert values.max() <= KL_PG + 1e-12  # KALE ≤ KL(P ‖ G)
    assert closed_form_f(A_OPT, log_z(A_OPT)) == pytest.approx(KL_PG)  # tight at E*, log Z
    assert closed_form_f(0.5 * A_OPT, log_z(0.5 * A_OPT)) < KL_PG - 0.1


def test_c_starts_at_the_monte_carlo_log_partition():
    a = A_OPT
    method = gebm(LinearEnergy(a), LinearBase(L, torch.zeros(2, dtype=F64)), init_samples=20000)
    x = MU_P + torch.randn(64, 2, generator=gen(3), dtype=F64) @ L.T
    assert not method.c_ready
    method.step(x, gen(4))
    v = float(a @ COV @ a)  # aᵀx ~ N(0, v) under G: se(log Ẑ) ≈ √(e^v − 1)/√n
    se = math.sqrt(math.exp(v) - 1) / math.sqrt(20000)
    assert method.c_ready and abs(method.c.item() - log_z(a)) < Z * se
    c = method.c.item()
    method.step(x, gen(5))  # not re-initialised
    assert method.c.item() == c


# -- the base's gradient ------------------------------------------------------------------


def test_base_gradient_is_the_papers_importance_weighted_gradient():
    torch.manual_seed(3)
    base = MLPGenerator(2, 2, width=6, depth=1, activation="tanh").double()
    energy = MLPEnergy(2, width=6, depth=1, activation="tanh").double()
    method = gebm(energy, base)
    method.c_ready = True
    n = 16
    x = torch.randn(n, 2, generator=gen(5), dtype=F64)
    out = method.step(x, gen(6))
    assert "base" in out.losses
    params = list(base.parameters())
    got = torch.autograd.grad(out.losses["base"], params)

    z = torch.randn(n, 2, generator=gen(6), dtype=F64)  # the same latents as the step's
    # (1) the paper's estimator: Σᵢ wᵢ ∇ₓE(G(zᵢ)) ∇_θG(zᵢ), w = softmax(−E(G(z)))
    xg = base(z)
    xd = xg.detach().requires_grad_(True)
    e = energy(xd)
    (gx,) = torch.autograd.grad(e.sum(), xd)
    w = torch.softmax(-e.detach(), dim=0)
    paper = torch.autograd.grad((xg * (w[:, None] * gx)).sum(), params)
    for g, p in zip(got, paper, strict=True):
        torch.testing.assert_close(g, p, rtol=1e-10, atol=1e-12)

    # (2) central finite differences of −log Ẑ(θ) = −(logsumexp(−E(G_θ(z))) + const)
    def objective() -> float:
        with torch.no_grad():
            return -float(torch.logsumexp(-energy(base(z)), dim=0))

    eps = 1e-6
    for p, g in zip(params, got, strict=True):
        flat, gflat = p.data.view(-1), g.view(-1)
        for i in range(flat.numel()):
            old = float(flat[i])
            flat[i] = old + eps
            up = objective()
            flat[i] = old - eps
            down = objective()
            flat[i] = old
            assert (up - down) / (2 * eps) == pytest.approx(float(gflat[i]), abs=1e-7)


def test_energy_loss_is_minus_kale_plus_the_gradient_penalty():
    torch.manual_seed(4)
    energy = MLPEnergy(2, width=6, depth=1, activation="tanh").double()
    base = MLPGenerator(2, 2, width=6, depth=1).double()
    method = gebm(energy, base, penalty=0.7)
    method.c_ready = True
    x = torch.randn(8, 2, generator=gen(7), dtype=F64)
    rng = gen(8)
    out = method.step(x, rng)
    g = gen(8)  # replay the step's stream: the latents, then the interpolation weights
    z = torch.randn(8, 2, generator=g, dtype=F64)
    alpha = torch.rand((8, 1), generator=g, dtype=F64)
    xg = base(z).detach()
    x_hat = (alpha * x + (1 - alpha) * xg).requires_grad_(True)
    (gx,) = torch.autograd.grad(energy(x_hat).sum(), x_hat)
    gp = float(gx.square().sum(1).mean())
    c = method.c.item()
    kale = float(-(energy(x).mean() + c) - torch.exp(-(energy(xg) + c)).mean() + 1)
    assert float(out.losses["energy"]) == pytest.approx(-kale + 0.7 * gp, rel=1e-10)
    assert out.metrics["grad_penalty"] == pytest.approx(gp, rel=1e-10)


def test_schedule_blocks_and_warmups():
    method = gebm(LinearEnergy(A_OPT), LinearBase(L, torch.zeros(2, dtype=F64)),
                  energy_steps=2, warmup_energy_steps=3, warmup_every=2)
    flags = [method._schedule() for _ in range(15)]
    # blocks: warm-up (k=0) 3, k=1: 2, warm-up (k=2) 3, k=3: 2, warm-up (k=4) 3, ...
    expected = [False, False, True, False, True, False, False, True, False, True,
                False, False, True, False, True]
    assert flags == expected
    assert method.base_steps == sum(expected) and method.calls == 15


# -- latent sampling: linear G, quadratic E --------------------------------------------------
A_LIN = torch.tensor([[1.0, 0.5], [0.0, 1.0], [0.5, -0.5]], dtype=F64)
B_LIN = torch.tensor([0.2, -0.1, 0.3], dtype=F64)
M_E = torch.tensor([1.0, 0.0, -1.0], dtype=F64)
P_E = torch.tensor([[2.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 3.0]], dtype=F64)


def posterior(temperature: float) -> tuple[Tensor, Tensor]:
    """ν(z) ∝ N(z; 0, I) exp(−E(Az + b)/T): N(μ, Λ⁻¹), Λ = I + AᵀPA/T,
    μ = Λ⁻¹ AᵀP(m − b)/T."""
    lam = torch.eye(2, dtype=F64) + A_LIN.T @ P_E @ A_LIN / temperature
    cov = torch.linalg.inv(lam)
    return cov @ A_LIN.T @ P_E @ (M_E - B_LIN) / temperature, cov


def moment_errors(x: Tensor, mean: Tensor, cov: Tensor) -> Tensor:
    """Errors of the mean and covariance entries in standard errors."""
    n = x.shape[0]
    c = x - mean
    prods = (c[:, :, None] * c[:, None, :]).reshape(n, -1)
    stats = torch.cat((x, prods), dim=1)
    truth = torch.cat((mean, cov.reshape(-1)))
    sd = stats.std(0).clamp_min(1e-12)
    return (stats.mean(0) - truth).abs() / (sd / math.sqrt(n))


def linear_gebm(sampler, temperature: float = 1.0, steps: int = 200) -> GEBM:
    return gebm(QuadraticEnergy(M_E, P_E), LinearBase(A_LIN, B_LIN), sampler,
                temperature=temperature, sample_steps=steps)


@pytest.mark.parametrize("sampler, temperature", [
    # HMC trajectories (ε·L) about a quarter of the posterior's period 2πσ, σ ≈ 0.5-0.75: a
    # half period would reflect each chain about the mean and never mix
    (MALA(0.3), 1.0), (HMC(0.15, n_leapfrog=5), 1.0), (HMC(0.2, n_leapfrog=5), 2.5),
    (IndependentMH(1.0), 1.0), (UnderdampedLangevin(0.05, friction=1.0), 1.0)],
    ids=["mala", "hmc", "hmc_T2.5", "imh", "underdamped_small_step"])
def test_latent_samplers_match_the_gaussian_posterior(sampler, temperature):
    method = linear_gebm(sampler, temperature, steps=300)
    x = method.sample(4000, rng=gen(10))
    mu, cov = posterior(temperature)
    err = moment_errors(x, A_LIN @ mu + B_LIN, A_LIN @ cov @ A_LIN.T)
    assert err.max() < Z, err.tolist()


def test_latent_ula_has_its_known_bias():
    # ULA on N(μ, Σ) is a Gaussian AR(1): per eigen-variance λ of Σ its variance is
    # λ/(1 − s/(2λ)); at s = 0.2 that is visibly off the exact posterior.
    s = 0.2
    method = linear_gebm(Langevin(s), steps=300)
    t = method.target()
    z0 = t.init.sample(6000, generator=gen(11)).double()
    z = t.sampler.run(t.energy, z0, t.n_steps, generator=gen(12))
    mu, cov = posterior(1.0)
    lam, q = torch.linalg.eigh(cov)
    ula_cov = q @ torch.diag(lam / (1 - s / (2 * lam))) @ q.T
    assert moment_errors(z, mu, ula_cov).max() < Z
    assert moment_errors(z, mu, cov).max() > Z
    # and model samples are these latents decoded
    x = method.sample(10, x0=z[:10], n_steps=0)
    torch.testing.assert_close(x, z[:10] @ A_LIN.T + B_LIN)


def test_zero_sample_steps_is_the_base_alone():
    method = linear_gebm(MALA(0.3), steps=0)
    x = method.sample(5, rng=gen(13))
    z = torch.randn(5, 2, generator=gen(13), dtype=F64)
    torch.testing.assert_close(x, z @ A_LIN.T + B_LIN)
    assert method.target().describe() == "z ~ N(0, I) in latent space"


def test_latent_energy_formula():
    e, base = QuadraticEnergy(M_E, P_E), LinearBase(A_LIN, B_LIN)
    z = torch.randn(7, 2, generator=gen(14), dtype=F64)
    u = LatentEnergy(e, base, temperature=2.0)(z)
    torch.testing.assert_close(u, 0.5 * z.square().sum(1) + e(z @ A_LIN.T + B_LIN) / 2.0)
    with pytest.raises(ValueError, match="temperature"):
        LatentEnergy(e, base, temperature=0.0)


# -- the density of a GEBM with a base that has one ------------------------------------------


def test_density_and_importance_sampled_log_z():
    a = torch.tensor([0.7, -0.4], dtype=F64)
    b = torch.tensor([0.5, 1.0], dtype=F64)
    base = LinearBase(L, b)
    density = GEBMDensity(LinearEnergy(a), base)
    x = torch.randn(5, 2, generator=gen(15), dtype=F64)
    torch.testing.assert_close(density(x), -(x @ a) - base.log_prob(x))
    # Z = E_{x~N(b, Σ)}[exp(aᵀx)] = exp(aᵀb + ½aᵀΣa)
    exact = float(a @ b) + 0.5 * float(a @ COV @ a)
    est, se = density.log_partition_is(40000, gen(16))
    v = float(a @ COV @ a)
    assert se == pytest.approx(math.sqrt(math.exp(v) - 1) / math.sqrt(40000), rel=0.1)
    assert abs(est - exact) < Z * se
    method = gebm(LinearEnergy(a), base)
    assert isinstance(method.energy_model(), GEBMDensity)
    no_density = gebm(LinearEnergy(a), MLPGenerator(2, 2, width=4, depth=1).double())
    assert no_density.energy_model() is None


def test_flow_generator_density_integrates_to_one():
    pytest.importorskip("zuko")
    from ebmlab.generators import FlowGenerator

    torch.manual_seed(5)
    flow = FlowGenerator(2, transforms=2, width=16)
    with torch.no_grad():  # give the untrained flow some shape
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    xs = torch.linspace(-8, 8, 401)
    grid = torch.cartesian_prod(xs, xs)
    with torch.no_grad():
        mass = float(flow.log_prob(grid).exp().sum()) * float(xs[1] - xs[0]) ** 2
        z = torch.randn(10, 2)
        x = flow(z)
    assert mass == pytest.approx(1.0, abs=5e-3)
    torch.testing.assert_close(flow.flow().transform(x), z, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="vector data"):
        FlowGenerator((1, 4, 4))


# -- resume --------------------------------------------------------------------------------
RESUME = ["method.name=gebm", "data.n_train=400", "data.n_test=100", "model.width=16",
          "model.depth=2", "model.spectral_norm=true", "model.reference_sd=none",
          "generator.width=16", "generator.latent_dim=2", "method.energy_steps=3",
          "method.warmup_energy_steps=4", "method.warmup_every=2", "method.sample_steps=2",
          "method.init_samples=300", "method.penalty=0.5", "method.energy_floor=-3",
          "train.batch_size=32", "train.progress=false", "train.plot_every=0",
          "train.longrun_factor=1", "train.iterations=13", "train.ckpt_every=6",
          "train.log_every=1"]


def test_resume_mid_block_is_bit_identical(tmp_path):
    cfg = load_config(RunConfig, overrides=RESUME)
    full = start_run(cfg, tmp_path / "full")
    full.fit()
    part = start_run(cfg, tmp_path / "part")
    assert part.fit(until=6) == {}
    assert part.method.block_left != 0  # stopped inside a block
    resumed = resume_run(cfg, tmp_path / "part")
    resumed.fit()
    for name, module in full.method.modules().items():
        for (ka, a), (kb, b) in zip(module.state_dict().items(),
                                    resumed.method.modules()[name].state_dict().items(),
                                    strict=True):
            assert ka == kb and torch.equal(a, b), (name, ka)
    assert full.method.state_dict() == resumed.method.state_dict()

    def rows(path):
        out = [json.loads(r) for r in (path / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "seconds"} for r in out]

    assert rows(tmp_path / "full") == rows(tmp_path / "part")
    logged = rows(tmp_path / "full")
    assert [r.get("base_step") for r in logged] == [0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0]
    assert all(("loss_base" in r) == (r["base_step"] == 1) for r in logged)


# -- lifted data ---------------------------------------------------------------------------


def test_lifted_data_sets():
    assert parse_lifted("rings_16d") == ("rings", 16) and parse_lifted("rings") is None
    with pytest.raises(ValueError, match="3 <= D"):
        parse_lifted("rings_2d")
    f = LiftMap(8)
    u = torch.randn(500, 2, generator=gen(17), dtype=F64)
    v = torch.randn(500, 2, generator=gen(18), dtype=F64)
    ratio = (f(u) - f(v)).norm(dim=1) / (u - v).norm(dim=1)
    assert ratio.min() >= 0.2 - 1e-9 and ratio.max() <= 1.8 + 1e-9  # bi-Lipschitz
    torch.testing.assert_close(LiftMap(8).q, f.q)  # one fixed map per dimension
    x = lift(u, 8, seed=1, noise=0.0)
    torch.testing.assert_close(x, f(u).float())
    cfg = load_config(RunConfig, overrides=["data.name=moons_8d", "data.n_train=300",
                                            "data.n_test=100"]).data
    data = load_data(cfg)
    assert data.name == "moons_8d" and data.train.shape == (300, 8) and data.bounds is None
    assert data.log_density is None
    again = load_data(cfg)
    assert torch.equal(data.train, again.train)
    for bad, message in (("rings_2d", "3 <= D"), ("nope_8d", "data.name must be one of")):
        with pytest.raises(ConfigError, match=message):
            load_config(RunConfig, overrides=[f"data.name={bad}"])


# -- the CLI end to end --------------------------------------------------------------------
TINY = ["method.name=gebm", "model.width=16", "model.depth=2", "model.reference_sd=none",
        "generator.width=16", "method.energy_steps=2", "method.warmup_energy_steps=2",
        "method.sample_steps=3", "method.init_samples=200", "train.batch_size=32",
        "train.progress=false", "train.longrun_factor=1", "data.n_train=400",
        "data.n_test=200", "train.plot_every=0", "train.iterations=6", "train.ckpt_every=3"]


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def sets(*extra: str) -> list[str]:
    return [a for s in (*TINY, *extra) for a in ("--set", s)]


def test_cli_train_and_sample_with_a_flow_base(tmp_path, capsys):
    pytest.importorskip("zuko")
    out = tmp_path / "run"
    code, stdout, err = cli(capsys, "train", *sets("generator.name=flow",
                                                   "generator.transforms=2"),
                            "--out", str(out))
    assert code == 0, err
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["method"] == "gebm" and summary["kl"] > 0
    # importance-sampled log Z agrees with the quadrature (a few se plus the grid's error)
    assert abs(summary["log_z_is"] - summary["log_z"]) < Z * summary["log_z_is_se"] + 0.02
    assert abs(summary["test_nll_is"] - summary["nll"]) < Z * summary["log_z_is_se"] + 0.02
    assert (out / "density.png").exists() and (out / "samples.png").exists()
    code, stdout, err = cli(capsys, "sample", "--run", str(out), "--chains", "50",
                            "--out", str(tmp_path / "s"))
    assert code == 0, err
    x = np.load(tmp_path / "s" / "samples.npy")
    assert x.shape == (50, 2) and np.isfinite(x).all()
    assert "langevin steps from z ~ N(0, I)" in json.loads(stdout.strip())["origin"]
    run = load_run(out)
    assert run.sample(7).shape == (7, 2)
    assert torch.isfinite(run.energy(torch.zeros(3, 2))).all()


def test_cli_train_and_sample_with_an_mlp_base(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = cli(capsys, "train", *sets("generator.latent_dim=2",
                                                   "samplers.latent.name=mala",
                                                   "samplers.latent.step_size=0.05"),
                            "--out", str(out))
    assert code == 0, err
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert "kl" not in summary and summary["longrun"]["model"]["mmd2"] >= 0
    assert (out / "samples.png").exists()
    code, stdout, err = cli(capsys, "sample", "--run", str(out), "--chains", "40", "--steps",
                            "5", "--out", str(tmp_path / "s"))
    assert code == 0, err
    assert np.load(tmp_path / "s" / "samples.npy").shape == (40, 2)
    assert (tmp_path / "s" / "samples.png").exists()
    assert json.loads(stdout.strip())["origin"].startswith("5 mala steps")
    run = load_run(out)
    assert run.sample(5).shape == (5, 2)
    with pytest.raises(ValueError, match="no energy"):
        run.energy  # noqa: B018 - a model without a density says so


def test_cli_imh_latent_sampler_drops_the_default_step(tmp_path, capsys):
    cfg = load_config(RunConfig, overrides=[*TINY, "samplers.latent.name=imh"])
    assert cfg.samplers["latent"] == {"name": "imh"}
    cfg = load_config(RunConfig, overrides=[*TINY, "samplers.latent.name=hmc"])
    assert cfg.samplers["latent"] == {"name": "hmc", "step_size": 0.01}


@pytest.mark.parametrize("extra, message", [
    (["samplers.latent.name=ula"], "samplers.latent.name must be one of"),
    (["method.energy_steps=0"], "method.energy_steps must be >= 1"),
    (["method.temperature=0"], "method.temperature must be > 0"),
    (["data.name=digits", "generator.name=flow"], "generator.name = 'flow' needs vector data"),
    (["method.sample_steps=-1"], "method.sample_steps must be >= 0"),
])
def test_bad_options_are_one_line_errors(tmp_path, capsys, extra, message):
    if "generator.name=flow" in extra:
        pytest.importorskip("zuko")
    out = tmp_path / "run"
    code, _, err = cli(capsys, "train", *sets(*extra), "--out", str(out))
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_flow_base_without_zuko_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "zuko", None)  # `import zuko` raises ImportError
    out = tmp_path / "run"
    code, _, err = cli(capsys, "train", *sets("generator.name=flow"), "--out", str(out))
    assert code == 2 and err.count("\n") == 1, err
    assert "needs the zuko package" in err and "ebmlab[flow]" in err
    assert not out.exists()
