"""Masked sampling (``ebmlab.samplers.masked``): observed coordinates bit-identical, the
missing ones drawn from the exact conditional p(x_m | x_o) ∝ exp(−U(x_o ⊕ x_m)).

Exact answers: the conditional of a correlated Gaussian (Schur complement), ULA's exact
stationary covariance on that conditional, and the conditional of a small RBM by
enumerating its hidden states. Tolerances in Monte-Carlo standard errors (final states of
independent chains are i.i.d. draws)."""

from __future__ import annotations

import math

import pytest
import torch

from ebmlab.energies import Gaussian, GaussianBernoulliRBM, MLPEnergy
from ebmlab.energies.rbm import hidden_states
from ebmlab.samplers import HMC, MALA, SAMPLERS, Langevin, make_sampler
from ebmlab.samplers.gibbs import GibbsSweeps
from ebmlab.samplers.masked import MaskedEnergy, as_mask, masked_energy, sample_masked

Z = 4.5
N = 3000  # chains per condition


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def correlated_gaussian() -> Gaussian:
    """5-D, eigenvalues 0.4 … 2 (ULA with s = 0.25 is stable on every conditional)."""
    q, _ = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64, generator=gen(0)))
    cov = q @ torch.diag(torch.tensor([0.4, 0.6, 1.0, 1.5, 2.0], dtype=torch.float64)) @ q.T
    return Gaussian([0.5, -1.0, 0.0, 1.0, 0.3], (cov + cov.T) / 2)


def conditional(target: Gaussian, missing: list[int], x_obs: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of x_m | x_o: μ_m + Σ_mo Σ_oo⁻¹ (x_o − μ_o), Σ_mm − Σ_mo Σ_oo⁻¹ Σ_om."""
    obs = [i for i in range(target.dim) if i not in missing]
    s, mu = target.cov, target.mean
    s_mo, s_oo = s[missing][:, obs], s[obs][:, obs]
    gain = s_mo @ torch.linalg.inv(s_oo)
    return (mu[missing] + gain @ (x_obs[obs] - mu[obs]),
            s[missing][:, missing] - gain @ s_mo.T)


def mc_error(samples: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    n = samples.shape[0]
    return (samples.mean(0) - truth).abs() / (samples.std(0) / math.sqrt(n))


def moment_errors(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    c = x - mean
    prods = (c[:, :, None] * c[:, None, :]).reshape(x.shape[0], -1)
    return torch.cat((mc_error(x, mean), mc_error(prods, cov.reshape(-1))))


# Two conditions in one batch: rows 0..N-1 miss coordinates {1, 3, 4}, rows N..2N-1 miss
# {0, 2} (one padding slot: each row has its own mask).
MISSING = ([1, 3, 4], [0, 2])
X_OBS = (torch.tensor([1.5, 0.0, -0.5, 0.0, 0.0], dtype=torch.float64),
         torch.tensor([0.0, 0.8, 0.0, 2.0, -1.0], dtype=torch.float64))


def two_conditions() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.cat([v.expand(N, 5) for v in X_OBS])
    mask = torch.zeros(2 * N, 5, dtype=torch.bool)
    for g, miss in enumerate(MISSING):
        mask[g * N:(g + 1) * N, miss] = True
    return x, mask


def overdispersed_start(x: torch.Tensor, seed: int) -> torch.Tensor:
    return 3.0 * torch.randn(x.shape, dtype=x.dtype, generator=gen(seed))


# HMC's trajectory (6 × 0.2) is kept well below half a period (π·sd) of every conditional
# direction (sd ≥ 0.63): a trajectory of ≈ π·sd maps x − μ to −(x − μ) and would never forget
# the overdispersed start's variance (a property of fixed-length HMC, not of the masking).
@pytest.mark.parametrize("sampler, steps", [(MALA(0.3), 200), (HMC(0.2, n_leapfrog=6), 40)],
                         ids=["mala", "hmc"])
def test_metropolis_samplers_on_the_masked_energy_sample_the_exact_conditional(sampler, steps):
    target = correlated_gaussian()
    x, mask = two_conditions()
    out = sample_masked(sampler, target, x, mask, steps, x0=overdispersed_start(x, 1),
                        generator=gen(2))
    assert torch.equal(out[~mask], x[~mask])
    for g, miss in enumerate(MISSING):
        rows = out[g * N:(g + 1) * N][:, miss]
        mean, cov = conditional(target, miss, X_OBS[g])
        err = moment_errors(rows, mean, cov)
        assert err.max() < Z, f"condition {g}: off by {err.max():.1f} SE"
        # The test can fail: the unconditional marginal of the same coordinates is rejected.
        marg = moment_errors(rows, target.mean[miss], target.cov[miss][:, miss])
        assert marg.max() > 3 * Z


def ula_stationary_cov(cov: torch.Tensor, s: float) -> torch.Tensor:
    """ULA on N(μ, Σ) is a Gaussian AR(1); per eigen-variance λ its variance is λ/(1 − s/(2λ))."""
    lam, q = torch.linalg.eigh(cov)
    return q @ torch.diag(lam / (1 - s / (2 * lam))) @ q.T


def test_langevin_on_the_masked_energy_has_ulas_exact_stationary_law_on_the_conditional():
    target = correlated_gaussian()
    x, mask = two_conditions()
    s = 0.25
    out = sample_masked(Langevin(s), target, x, mask, 300, x0=overdispersed_start(x, 3),
                        generator=gen(4))
    assert torch.equal(out[~mask], x[~mask])
    for g, miss in enumerate(MISSING):
        rows = out[g * N:(g + 1) * N][:, miss]
        mean, cov = conditional(target, miss, X_OBS[g])
        assert moment_errors(rows, mean, ula_stationary_cov(cov, s)).max() < Z
        assert moment_errors(rows, mean, cov).max() > Z  # and ULA's O(s) bias is visible


def test_masked_block_gibbs_samples_the_exact_conditional_of_an_rbm():
    torch.manual_seed(5)
    rbm = GaussianBernoulliRBM(6, 3, init_scale=1.0, dtype=torch.float64)
    with torch.no_grad():
        rbm.b.copy_(torch.tensor([0.5, -0.5, 0.0, 1.0, 0.0, -1.0], dtype=torch.float64))
    miss, obs = [0, 2, 5], [1, 3, 4]
    x_obs = torch.tensor([0.0, 1.5, 0.0, -1.0, 2.0, 0.0], dtype=torch.float64)
    # Exact: p(x_m | x_o) = Σ_h p(h | x_o) N(x_m; (b + Bh)_m, I),
    #        p(h | x_o) ∝ p(h) N(x_o; (b + Bh)_o, I).
    with torch.no_grad():
        h = hidden_states(3)
        means = rbm.b + h @ rbm.B.T
        logw = rbm.hidden_log_marginal() - 0.5 * (x_obs[obs] - means[:, obs]).square().sum(1)
        w = torch.softmax(logw, 0)
        exact_mean = w @ means[:, miss]
        exact_second = w @ (means[:, miss].square() + 1.0)
    x = x_obs.expand(4000, 6).clone()
    mask = torch.zeros(6, dtype=torch.bool)
    mask[miss] = True
    cond = masked_energy(rbm, x, mask)
    assert hasattr(cond, "gibbs")
    out = sample_masked(GibbsSweeps(), rbm, x, mask, 30, generator=gen(6))
    assert torch.equal(out[:, obs], x[:, obs])
    assert mc_error(out[:, miss], exact_mean).max() < Z
    assert mc_error(out[:, miss].square(), exact_second).max() < Z
    assert (w.max() < 0.9) and mc_error(out[:, miss], rbm.exact_moments()["x"][miss]).max() > Z


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_leaves_observed_pixels_bit_identical(name):
    torch.manual_seed(7)
    energy = MLPEnergy(16, width=16, depth=2)
    x = torch.randn(6, 1, 4, 4, generator=gen(8))
    mask = torch.rand(6, 1, 4, 4, generator=gen(9)) < 0.4  # a different mask per image
    mask[:, 0, 0, 0] = True
    options = {} if name == "imh" else {"step_size": 0.01}  # imh proposes from N(0, I)
    if name == "anila":
        options["threshold"] = 1.0
    out = sample_masked(make_sampler(name, **options), energy, x, mask, 15,
                        x0=torch.randn(x.shape, generator=gen(10)), generator=gen(11))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out[~mask], x[~mask])
    assert torch.isfinite(out).all()
    assert not torch.equal(out[mask], x[mask])  # the missing pixels did move


def test_every_step_sees_the_observed_pixels_exactly():
    """Not only the end: the energy is evaluated on images whose observed pixels are x's."""
    x = torch.randn(4, 3, 3, generator=gen(12))
    mask = torch.zeros(3, 3, dtype=torch.bool)
    mask[1:, 1:] = True
    seen: list[torch.Tensor] = []

    def energy(img: torch.Tensor) -> torch.Tensor:
        seen.append(img.detach().clone())
        return 0.5 * img.reshape(img.shape[0], -1).square().sum(1)

    sample_masked(MALA(0.5), energy, x, mask, 10, generator=gen(13))
    assert len(seen) >= 10
    for img in seen:
        assert torch.equal(img[:, ~mask], x[:, ~mask])


def test_svgd_runs_one_particle_system_per_condition():
    """Two conditions far apart: SVGD per group matches each conditional's mean; a shared
    particle system would drag both groups together through the kernel."""
    target = correlated_gaussian()
    x, mask = two_conditions()
    n = 150
    rows = torch.cat([torch.arange(n), N + torch.arange(n)])
    x, mask = x[rows], mask[rows]
    out = sample_masked(SAMPLERS["svgd"](0.2), target, x, mask, 300,
                        x0=torch.randn(x.shape, dtype=x.dtype, generator=gen(14)))
    assert torch.equal(out[~mask], x[~mask])
    for g, miss in enumerate(MISSING):
        mean, cov = conditional(target, miss, X_OBS[g])
        got = out[g * n:(g + 1) * n][:, miss]
        assert mc_error(got, mean).max() < Z


def test_masked_energy_is_the_full_energy_of_the_filled_image_plus_the_padding_term():
    target = correlated_gaussian()
    x = torch.randn(3, 5, dtype=torch.float64, generator=gen(15))
    mask = torch.tensor([[1, 0, 1, 0, 1], [0, 1, 0, 0, 0], [1, 1, 0, 0, 0]])
    cond = MaskedEnergy(target, x, mask)
    assert cond.n_missing == 3
    z = torch.randn(3, 3, dtype=torch.float64, generator=gen(16))
    full = cond.embed(z)
    assert torch.equal(full[0, [0, 2, 4]], z[0]) and torch.equal(full[1, [1]], z[1, :1])
    assert torch.equal(full[~as_mask(mask, x)], x[~as_mask(mask, x)])
    pad = 0.5 * (z[1, 1:].square().sum() * torch.tensor([0.0, 1.0, 0.0]) +
                 z[2, 2:].square().sum() * torch.tensor([0.0, 0.0, 1.0]))
    assert torch.allclose(cond(z), target(full) + pad.to(torch.float64))
    assert torch.equal(cond.embed(cond.restrict(x)), x)
    # the gradient of the conditional is the full gradient on the missing coordinates
    zg = z.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(cond(zg)[0], zg)
    fg = full.clone().requires_grad_(True)
    (gf,) = torch.autograd.grad(target(fg)[0], fg)
    assert torch.allclose(g[0], gf[0, [0, 2, 4]])


def test_bad_masks_are_one_line_errors():
    x = torch.randn(2, 4)
    with pytest.raises(ValueError, match="row 1 of the mask has no missing coordinate"):
        MaskedEnergy(lambda v: v.sum(1), x, torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0]]))
    with pytest.raises(ValueError, match=r"mask of shape \(3,\) fits neither"):
        sample_masked(MALA(0.1), lambda v: v.sum(1), x, torch.ones(3), 1)
    with pytest.raises(ValueError, match="mask values must be 0"):
        as_mask(torch.full((4,), 0.5), x)
