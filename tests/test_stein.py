"""SteinCD, SteinGAN and SteinCD-GAN(α): update rules against their formulas, learning
against exact likelihoods, and the end-to-end CLI path on the built-in digits."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from ebmlab import load_run
from ebmlab.cli import main
from ebmlab.energies import GaussianBernoulliRBM
from ebmlab.generators import Generator, MLPGenerator
from ebmlab.methods import SteinCD, SteinGAN
from ebmlab.samplers import SVGD, Langevin


class Quadratic(nn.Module):
    """``U(x) = ½‖x − m‖²`` (a unit Gaussian), with ``m`` trainable."""

    def __init__(self, m: torch.Tensor) -> None:
        super().__init__()
        self.m = nn.Parameter(m.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (x - self.m).square().sum(1)


def _grads(loss: torch.Tensor, module: nn.Module) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(module.parameters()))])


def test_steincd_update_is_a_finite_difference_of_stein_score_matching():
    """Eq. (16)/(17): (1/ε)∇θ[mean U(x) − mean U(x + εφ)] and the symmetric version →
    −∇θ mean ∇ₓU(x)·φ(x) (φ held fixed) as ε → 0; the symmetric one is second-order."""
    torch.manual_seed(0)
    rbm = GaussianBernoulliRBM(3, 4, init_scale=0.5, dtype=torch.float64)
    x = torch.randn(64, 3, dtype=torch.float64)
    eps = 1e-4
    svgd = SVGD(step_size=eps)
    phi = svgd.direction(rbm, x)[0].detach()
    xg = x.clone().requires_grad_(True)
    (grad_u,) = torch.autograd.grad(rbm(xg).sum(), xg, create_graph=True)
    target = _grads(-(grad_u * phi).sum(1).mean(), rbm)
    for symmetric, scale, tol in ((False, eps, 1e-3), (True, 2 * eps, 1e-7)):
        out = SteinCD(rbm, svgd, symmetric=symmetric).step(x)
        got = _grads(out.losses["energy"], rbm) / scale
        assert torch.allclose(got, target, rtol=tol, atol=tol), (symmetric, got, target)
    assert torch.allclose(out.negatives, x + eps * phi)


def _tiny_rbm_problem(seed: int = 0):
    torch.manual_seed(seed)
    true = GaussianBernoulliRBM(4, 3, init_scale=1.0, dtype=torch.float64)
    with torch.no_grad():
        true.b.copy_(torch.tensor([0.5, -0.5, 0.0, 1.0], dtype=torch.float64))
    gen = torch.Generator().manual_seed(seed)
    train = true.sample_exact(3000, generator=gen)
    test = true.sample_exact(3000, generator=gen)
    return true, train, test


def test_steincd_raises_exact_test_likelihood_on_a_tiny_rbm():
    true, train, test = _tiny_rbm_problem()
    torch.manual_seed(1)
    model = GaussianBernoulliRBM(4, 3, init_scale=0.1, dtype=torch.float64)
    method = SteinCD(model, SVGD(step_size=0.1))
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    before = model.mean_log_likelihood(test)
    gen = torch.Generator().manual_seed(2)
    for _ in range(300):
        batch = train[torch.randint(0, train.shape[0], (100,), generator=gen)]
        opt.zero_grad()
        method.step(batch, gen).losses["energy"].backward()
        opt.step()
    after, best = model.mean_log_likelihood(test), true.mean_log_likelihood(test)
    # from ≈ −19.4 nats to within 10% of the gap to the true model's ≈ −6.3
    assert after - before > 0.9 * (best - before), (before, after, best)


def test_stein_methods_need_svgd():
    rbm = GaussianBernoulliRBM(2, 2)
    with pytest.raises(ValueError, match="SVGD"):
        SteinCD(rbm, Langevin(step_size=0.1))
    gen = MLPGenerator(2, 2)
    with pytest.raises(ValueError, match="SVGD"):
        SteinGAN(rbm, gen, Langevin(step_size=0.1))
    with pytest.raises(ValueError, match="kernel"):
        SteinGAN(rbm, gen, SVGD(step_size=0.1), kernel="gaussian")
    with pytest.raises(ValueError, match="features"):
        SteinGAN(rbm, gen, SVGD(step_size=0.1), kernel="features")
    with pytest.raises(ValueError, match="cd_prob"):
        SteinGAN(rbm, gen, SVGD(step_size=0.1), cd_prob=1.5)
    with pytest.raises(ValueError, match="discount"):
        SteinGAN(rbm, gen, SVGD(step_size=0.1), discount=1.0)


class LinearGenerator(Generator):
    """``x = Wξ + a``: a generator whose gradient is known in closed form."""

    def __init__(self, latent_dim: int, dim: int) -> None:
        super().__init__()
        self.latent_dim, self.output_shape = latent_dim, (dim,)
        self.linear = nn.Linear(latent_dim, dim)

    def _generate(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z)


def test_steingan_generator_gradient_back_propagates_the_svgd_direction():
    """Eq. (21): ∂loss/∂η = −(1/n) Σᵢ ∂_η G(ξᵢ)ᵀ φ*(xᵢ); for a linear G, x = Wξ + a."""
    torch.manual_seed(0)
    energy = Quadratic(torch.tensor([1.0, -1.0]))
    g = LinearGenerator(3, 2)
    svgd = SVGD(step_size=0.1)
    method = SteinGAN(energy, g, svgd)
    gen = torch.Generator().manual_seed(5)
    batch = torch.randn(50, 2)
    out = method.step(batch, gen)
    gen = torch.Generator().manual_seed(5)
    z = torch.randn(50, 3, generator=gen)
    x = g(z).detach()
    phi = svgd.direction(energy, x)[0]
    dw, da = torch.autograd.grad(out.losses["generator"], [g.linear.weight, g.linear.bias])
    assert torch.allclose(dw, -(phi.T @ z) / 50, atol=1e-6)
    assert torch.allclose(da, -phi.mean(0), atol=1e-6)
    # the energy's loss sees the generator's samples, detached
    assert torch.allclose(out.negatives, x)
    # mean U(x⁺) − mean U(x⁻) with U = ½‖x − m‖²: ∂/∂m = mean x⁻ − mean x⁺
    (dm,) = torch.autograd.grad(out.losses["energy"], [energy.m])
    torch.testing.assert_close(dm, x.mean(0) - batch.mean(0))


def _amortized_svgd(kernel: str, steps: int = 600) -> torch.Tensor:
    """Train only the generator against a fixed N(m, I); return its samples."""
    torch.manual_seed(0)
    energy = Quadratic(torch.tensor([2.0, -1.0]))
    g = MLPGenerator(2, 2, width=32, depth=2)
    method = SteinGAN(energy, g, SVGD(step_size=0.1), kernel=kernel, n_samples=200)
    opt = torch.optim.Adam(g.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    batch = torch.zeros(200, 2)
    for _ in range(steps):
        opt.zero_grad()
        method.step(batch, gen).losses["generator"].backward()
        opt.step()
    return method.sample(4000, rng=gen)


def test_amortized_svgd_matches_a_gaussian_and_the_kernel_gives_diversity():
    """With the kernel the generator learns N(m, I) (mean and variance); without it (amortized
    MAP) its samples collapse towards the mode m — the paper's Figure 1(c) vs (d)."""
    x = _amortized_svgd("rbf")
    assert torch.allclose(x.mean(0), torch.tensor([2.0, -1.0]), atol=0.15)
    # Amortized SVGD on a batch of n = 200 sits a little below the target's variance
    # (measured 0.82 / 0.91 here; 0.95 / 0.89 with n = 1000): a finite-batch bias of the
    # stationary point, not of the sampler (particle SVGD with n = 200 gives 1.05 / 1.09).
    # Upper bound tight, lower bound allowing that bias; without the kernel it is < 0.05.
    assert ((x.var(0) > 0.7) & (x.var(0) < 1.1)).all(), x.var(0)
    x_map = _amortized_svgd("none")
    assert (x_map.var(0) < 0.05).all(), x_map.var(0)
    assert torch.allclose(x_map.mean(0), torch.tensor([2.0, -1.0]), atol=0.1)


def test_steingan_discount_and_cd_mixture():
    torch.manual_seed(0)
    energy = Quadratic(torch.zeros(2))
    g = MLPGenerator(2, 2)
    batch = torch.randn(40, 2) + 3.0  # data far from the energy's mode: U⁺ > U⁻
    svgd = SVGD(step_size=0.1)
    gen = torch.Generator().manual_seed(0)
    out = SteinGAN(energy, g, svgd, discount=0.7, discount_high=0.9).step(batch, gen)
    u_pos, u_neg = out.metrics["energy_pos"], out.metrics["energy_neg"]
    assert u_pos > u_neg and out.metrics["discount"] == 0.9
    assert out.losses["energy"].item() == pytest.approx(u_pos - 0.1 * u_neg, rel=1e-5)
    out = SteinGAN(energy, g, svgd, cd_prob=1.0).step(batch, gen)
    phi = svgd.direction(energy, batch)[0]
    assert out.metrics["cd_update"] == 1.0
    assert torch.allclose(out.negatives, batch + 0.1 * phi, atol=1e-6)
    assert SteinGAN(energy, g, svgd, cd_prob=0.25).name == "steincd_gan"


@pytest.mark.parametrize("method", ["steincd", "steingan"])
def test_cli_trains_an_rbm_on_the_digits_with_exact_likelihood(tmp_path, capsys, method):
    out = tmp_path / "run"
    sets = ["data.name=digits", "model.name=rbm", f"method.name={method}", "sampler.name=svgd",
            "sampler.step_size=0.1", "train.iterations=30", "train.batch_size=100",
            "train.progress=false", "train.longrun_factor=1"]
    if method == "steingan":
        sets += ["generator.name=deconv", "generator.width=8", "generator.latent_dim=8"]
    assert main(["train", "--out", str(out), *_sets(sets)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == method
    # exact: mean log p(test) = −mean U − log Z, in pixel units (Jacobian of the scaling)
    run = load_run(out)
    data = run.trainer.data
    with torch.no_grad():
        log_z_z = float(run.method.energy.log_partition())
        ll_z = float(run.method.energy.log_prob(data.test.double()).mean())
    jac = float(data.scale.double().log().sum())
    assert summary["test_ll"] == pytest.approx(ll_z - jac, abs=1e-4)
    assert summary["log_z_exact"] == pytest.approx(log_z_z + jac, abs=1e-4)
    assert -100 < summary["test_ll"] < 0
    for name in ("data.png", "samples.png", "diagnosis.png"):
        assert (out / name).stat().st_size > 1000
    capsys.readouterr()
    assert main(["eval", "--run", str(out)]) == 0
    assert "test_ll" in json.loads(capsys.readouterr().out)
    capsys.readouterr()
    assert main(["sample", "--run", str(out), "--chains", "16"]) == 0
    assert (out / "sample" / "samples.png").exists()
    printed = json.loads(capsys.readouterr().out)
    assert printed["steps"] is None
    assert printed["origin"] == ("generator samples" if method == "steingan"
                                 else "1000 gibbs steps from noise")


def _sets(values: list[str]) -> list[str]:
    return [a for v in values for a in ("--set", v)]


def test_cli_stein_config_errors(tmp_path, capsys):
    base = ["train", "--out", str(tmp_path / "r"), "--set", "method.name=steincd"]
    assert main(base + _sets(["sampler.name=langevin"])) == 2
    assert "samplers.negatives.name = 'svgd'" in capsys.readouterr().err
    assert main(base + _sets(["sampler.name=svgd", "generator.name=deconv",
                              "method.name=steingan"])) == 2
    assert "image data" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "r"), "--set", "data.name=mnist"]) == 2
    assert "data.path is required" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "r"), "--set", "data.name=mnist",
                 "--set", f"data.path={tmp_path / 'nowhere'}"]) == 2
    assert "data.path" in capsys.readouterr().err
    for wrong, message in ((["method.kernel=none"], "method.kernel must be one of"),
                           (["method.cd_prob=0.5"], "method.cd_prob does not apply"),
                           (["method.name=steingan", "method.discount=1.0"],
                            "method.discount must be < 1")):
        assert main(base + _sets(["sampler.name=svgd", *wrong])) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
