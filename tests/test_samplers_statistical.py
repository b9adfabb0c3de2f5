"""Samplers against exact answers, float64, tolerances in Monte-Carlo standard errors.

Final states of many independent chains are i.i.d. draws of each chain's law,
so the standard error of any average is its sample sd over √n_chains.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ebmlab.energies import Gaussian, GaussianMixture
from ebmlab.samplers import (
    HMC,
    MALA,
    SVGD,
    AniLA,
    DualAveraging,
    IndependentMH,
    Langevin,
    UnderdampedLangevin,
    drive,
)
from ebmlab.samplers.svgd import median_bandwidth

Z = 4.5  # a few standard errors; many comparisons run per test
COV = [[1.0, 0.8], [0.8, 1.0]]
MIX = GaussianMixture([[-2.0, 0.0], [2.0, 1.0]], stds=[0.7, 1.0], weights=[0.3, 0.7])


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def mixture_moments(m: GaussianMixture) -> tuple[torch.Tensor, torch.Tensor]:
    w, mu, sd = m.log_weights.exp(), m.means, m.stds
    mean = (w[:, None] * mu).sum(0)
    second = sum(w[k] * (sd[k] ** 2 * torch.eye(2, dtype=torch.float64) + torch.outer(mu[k], mu[k]))
                 for k in range(len(w)))
    return mean, second - torch.outer(mean, mean)


def mc_error(samples: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """|mean(samples) − truth| in units of its standard error (elementwise)."""
    n = samples.shape[0]
    return (samples.mean(0) - truth).abs() / (samples.std(0) / math.sqrt(n))


def moment_errors(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """Errors of the mean and of the covariance entries, in standard errors."""
    c = x - mean
    prods = (c[:, :, None] * c[:, None, :]).reshape(x.shape[0], -1)
    return torch.cat((mc_error(x, mean), mc_error(prods, cov.reshape(-1))))


def assert_moments(x, mean, cov):
    err = moment_errors(x, mean, cov)
    assert err.max() < Z, f"moments off by {err.max():.1f} standard errors: {err.tolist()}"


@pytest.mark.parametrize(
    "sampler, steps",
    [(MALA(0.3), 150), (HMC(0.25, n_leapfrog=8), 40)],
    ids=["mala", "hmc"],
)
def test_exact_samplers_correlated_gaussian_from_overdispersed_start(sampler, steps):
    target = Gaussian([1.0, -1.0], COV)
    x0 = 3.0 * torch.randn(4000, 2, dtype=torch.float64, generator=gen(1))
    x = sampler.run(target, x0, steps, generator=gen(2))
    assert_moments(x, target.mean, target.cov)


@pytest.mark.parametrize(
    "sampler",
    [MALA(0.8), HMC(1.2, n_leapfrog=4), HMC(1.6, n_leapfrog=4, mass=torch.tensor([1.0, 2.0]))],
    ids=["mala", "hmc", "hmc_mass"],
)
def test_exact_samplers_keep_a_gaussian_mixture_invariant(sampler):
    # Started exactly at the target, an exact kernel leaves the law unchanged at any step size;
    # a large step (low acceptance) makes any error in the acceptance ratio visible.
    x0 = MIX.sample(6000, generator=gen(3))
    accepts = []
    x = sampler.run(MIX, x0, 40, generator=gen(4),
                    callback=lambda i, s, info: accepts.append(info.accept_prob.mean().item()))
    assert 0.3 < np.mean(accepts) < 0.8  # measured: 0.65, 0.68, 0.47
    assert_moments(x, *mixture_moments(MIX))


def test_mala_detects_its_own_bias_correction():
    """The same proposal without the accept step (ULA at s=0.8) is visibly biased."""
    x0 = MIX.sample(6000, generator=gen(3))
    x = Langevin(0.8).run(MIX, x0, 40, generator=gen(4))
    assert moment_errors(x, *mixture_moments(MIX)).max() > 2 * Z


def ula_stationary_cov(cov: torch.Tensor, s: float) -> torch.Tensor:
    """ULA on N(μ, Σ) is a Gaussian AR(1); per eigen-variance λ its variance is λ/(1 − s/(2λ))."""
    lam, q = torch.linalg.eigh(cov)
    return q @ torch.diag(lam / (1 - s / (2 * lam))) @ q.T


def test_ula_stationary_covariance_is_the_exact_ula_value():
    target = Gaussian([0.5, 0.0], [[1.0, 0.3], [0.3, 0.5]])
    s = 0.1
    x0 = target.sample(8000, generator=gen(5))
    x = Langevin(s).run(target, x0, 150, generator=gen(6))
    assert_moments(x, target.mean, ula_stationary_cov(target.cov, s))
    # ... and that bias is real: the exact covariance is rejected.
    assert moment_errors(x, target.mean, target.cov).max() > Z


def test_ula_tempered_targets_temperature():
    """noise_scale σ gives exp(−U/T), T = σ²/(2s): on N(0, 1) the variance is T/(1 − s/(2T))."""
    s, sigma = 0.01, 0.1  # T = 0.5
    x0 = torch.randn(8000, 1, dtype=torch.float64, generator=gen(7)) * math.sqrt(0.5)
    x = Langevin(s, noise_scale=sigma).run(Gaussian([0.0]), x0, 300, generator=gen(8))
    T = sigma**2 / (2 * s)
    assert mc_error(x.square(), torch.tensor([T / (1 - s / 2)], dtype=torch.float64)) < Z


def test_underdamped_matches_mixture_at_small_step_and_is_biased_at_large_step():
    exact = mixture_moments(MIX)
    x0 = MIX.sample(6000, generator=gen(9))
    small = UnderdampedLangevin(0.1, friction=2.0).run(MIX, x0, 100, generator=gen(10))
    assert_moments(small, *exact)
    large = UnderdampedLangevin(1.35, friction=2.0).run(MIX, x0, 100, generator=gen(10))
    assert moment_errors(large, *exact).max() > Z


def test_underdamped_converges_from_far_start():
    target = Gaussian([1.0, -1.0], COV)
    x0 = torch.full((4000, 2), 5.0, dtype=torch.float64)
    x = UnderdampedLangevin(0.2, friction=1.0).run(target, x0, 300, generator=gen(11))
    assert_moments(x, target.mean, target.cov)


def test_imh_converges_from_far_start():
    # Proposal N(0, 3² I) covers N(m, Σ) (bounded p/q), so IMH is uniformly ergodic.
    target = Gaussian([1.0, -1.0], COV)
    x0 = torch.full((4000, 2), 6.0, dtype=torch.float64)
    x = IndependentMH(3.0).run(target, x0, 200, generator=gen(30))
    assert_moments(x, target.mean, target.cov)


def test_imh_keeps_a_mixture_invariant_and_needs_its_proposal_ratio():
    # Started at the target, an exact kernel leaves the law unchanged at any proposal; without
    # the ratio q(x)/q(y) (a plain Metropolis test on independent draws) it samples ∝ p·q.
    x0 = MIX.sample(6000, generator=gen(31))
    x = IndependentMH(2.5, loc=0.5).run(MIX, x0, 30, generator=gen(32))
    assert_moments(x, *mixture_moments(MIX))

    class WithoutRatio(IndependentMH):
        def log_proposal(self, x):
            return torch.zeros(x.shape[0], dtype=x.dtype)

    biased = WithoutRatio(2.5, loc=0.5).run(MIX, x0, 30, generator=gen(32))
    assert moment_errors(biased, *mixture_moments(MIX)).max() > 2 * Z


def test_imh_one_step_acceptance_by_hand():
    # U takes two values (a step at x = 0.5); from x = 0 the proposal y is the generator's
    # first normal draw, accepted w.p. min(1, exp(U(0) − U(y) + ½y² − ½·0²)) for q = N(0, 1).
    def energy(x):
        return torch.where(x[:, 0] < 0.5, 0.3, 1.1).to(x.dtype)

    s = IndependentMH(1.0)
    state = s.init(energy, torch.zeros(1, 1, dtype=torch.float64))
    _, info = s.step(energy, state, gen(33))
    y = float(torch.randn((1, 1), generator=gen(33), dtype=torch.float64))
    expected = min(1.0, math.exp(0.3 - (0.3 if y < 0.5 else 1.1) + 0.5 * y * y))
    assert float(info.accept_prob) == pytest.approx(expected)


def radial_tilted_moment(b: float) -> float:
    """E‖x‖² under p_b ∝ exp(−‖x‖²/2)·max(b, ‖x‖)/b in 2-D (AniLA-norm's s → 0 limit)."""
    r = np.linspace(0.0, 12.0, 200_001)
    w = r * np.exp(-0.5 * r**2) * np.maximum(b, r)
    return float(np.trapezoid(r**2 * w, r) / np.trapezoid(w, r))


def coordinate_tilted_moment(b: float) -> float:
    """E x² under p_b ∝ exp(−x²/2)·max(b, |x|) in 1-D (AniLA-elementwise on a product target)."""
    x = np.linspace(-12.0, 12.0, 400_001)
    w = np.exp(-0.5 * x**2) * np.maximum(b, np.abs(x))
    return float(np.trapezoid(x**2 * w, x) / np.trapezoid(w, x))


@pytest.mark.parametrize("mode", ["norm", "elementwise"])
def test_anila_converges_to_its_small_step_limit(mode):
    target = Gaussian([0.0, 0.0])
    x0 = target.sample(6000, generator=gen(12))
    b = 1.0
    x = AniLA(0.01, threshold=b, mode=mode).run(target, x0, 500, generator=gen(13))
    if mode == "norm":
        stat, exact = x.square().sum(1, keepdim=True), radial_tilted_moment(b)
        assert exact > 2.1  # the tilt is large enough to be seen...
    else:
        stat, exact = x.square(), coordinate_tilted_moment(b)
    assert mc_error(stat, torch.tensor([exact], dtype=torch.float64)).max() < Z
    assert mc_error(stat, torch.tensor([2.0 if mode == "norm" else 1.0],
                                       dtype=torch.float64)).max() > Z  # ...and it is


def test_anila_with_inactive_threshold_converges_to_target_as_step_shrinks():
    target = Gaussian([0.0, 0.0])
    x0 = target.sample(6000, generator=gen(14))
    truth = torch.tensor([1.0, 1.0], dtype=torch.float64)
    coarse = AniLA(0.3, threshold=50.0).run(target, x0, 100, generator=gen(15))
    fine = AniLA(0.01, threshold=50.0).run(target, x0, 500, generator=gen(15))
    assert mc_error(coarse.square(), truth).max() > Z
    assert mc_error(fine.square(), truth).max() < Z


@pytest.mark.parametrize("normalize", [False, True])
def test_svgd_particles_match_gaussian_moments(normalize):
    # Particles are not independent draws; the yardstick is the Monte-Carlo standard error
    # of as many i.i.d. draws (SVGD should do at least as well). Measured: means within
    # 0.02 SE, covariances ~6 % low (finite-particle SVGD under-disperses): ~0.7 SE.
    target = Gaussian([1.0, -1.0], COV)
    x0 = torch.randn(200, 2, dtype=torch.float64, generator=gen(16))
    x = SVGD(0.3 if normalize else 0.2, normalize=normalize).run(target, x0, 500)
    assert_moments(x, target.mean, target.cov)
    # The particles spread over the target instead of collapsing to its mode.
    assert moment_errors(x0, target.mean, target.cov).max() > Z


def test_median_bandwidth_rule():
    # Six points on a line at 0..5: 15 pairwise distances 1×5, 2×4, 3×3, 4×2, 5×1, median 2.
    x = torch.tensor([[float(i), 0.0] for i in range(6)], dtype=torch.float64)
    sq = torch.cdist(x, x).square()
    assert median_bandwidth(sq).item() == pytest.approx(4.0 / math.log(6))
    # Points 0, 1, 3: distances 1, 2, 3, median 2.
    y = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)
    assert median_bandwidth(torch.cdist(y, y).square()).item() == pytest.approx(4 / math.log(3))
    # Degenerate sets fall back to h = 1.
    assert median_bandwidth(torch.zeros(1, 1)).item() == 1.0
    assert median_bandwidth(torch.zeros(4, 4)).item() == 1.0
    # SVGD uses exactly this h (and K = exp(-‖xᵢ − xⱼ‖²/h)) when bandwidth is None.
    k, _, h = SVGD(0.1).kernel(x)
    assert h.item() == pytest.approx(4.0 / math.log(6))
    torch.testing.assert_close(k, torch.exp(-sq * math.log(6) / 4.0))
    k, _, h = SVGD(0.1, bandwidth=0.5).kernel(x)
    assert h.item() == 0.5
    torch.testing.assert_close(k, torch.exp(-sq / 0.5))


def test_svgd_step_is_x_plus_step_times_direction():
    target = Gaussian([0.5, -0.5], COV)
    x = torch.randn(9, 2, dtype=torch.float64, generator=gen(22))
    sampler = SVGD(0.37)
    phi, u, g = sampler.direction(target, x)
    torch.testing.assert_close(sampler.run(target, x, 1), x + 0.37 * phi)
    torch.testing.assert_close(u, target(x))


@pytest.mark.parametrize("sampler, target_accept", [(MALA(2.0, adapt_steps=300), 0.574),
                                                    (HMC(1.0, 5, adapt_steps=300), 0.65)],
                         ids=["mala", "hmc"])
def test_dual_averaging_reaches_target_acceptance(sampler, target_accept):
    # A mixture, not a Gaussian: HMC's acceptance on a Gaussian is not monotone in the step
    # (leapfrog resonances), which no step-size controller can be expected to follow.
    target = MIX
    x0 = target.sample(500, generator=gen(17))
    state, _ = drive(sampler, target, x0, 300, generator=gen(18))
    frozen = state.step_size
    accepts = []
    drive(sampler, target, state.x, 200, generator=gen(19), state=state,
          callback=lambda i, s, info: accepts.append(info.accept_prob.mean().item()))
    assert state.step_size == frozen  # adaptation is over: the kernel is exact again
    assert abs(np.mean(accepts) - target_accept) < 0.06


def brute_force_phi(energy, x, features, h):
    """φ*(xᵢ) = (1/n) Σⱼ [−∇U(xⱼ) k(xⱼ, xᵢ) + ∇_{xⱼ} k(xⱼ, xᵢ)], pair by pair with autograd."""
    n = x.shape[0]
    xg = x.clone().requires_grad_(True)
    score = -torch.autograd.grad(energy(xg).sum(), xg)[0]
    phi = torch.zeros_like(x)
    for i in range(n):
        for j in range(n):
            a = x[j].clone().requires_grad_(True)
            k = torch.exp(-(features(a[None]) - features(x[i][None]).detach()).square().sum() / h)
            (dk,) = torch.autograd.grad(k, a)
            phi[i] += score[j] * k.detach() + dk
    return phi / n


@pytest.mark.parametrize("use_features", [False, True])
def test_svgd_direction_matches_direct_formula(use_features):
    target = Gaussian([0.5, -0.5], COV)
    x = torch.randn(7, 2, dtype=torch.float64, generator=gen(20))
    w = torch.randn(2, 3, dtype=torch.float64, generator=gen(21))

    def features(y):
        return torch.tanh(y @ w) if use_features else y

    svgd = SVGD(0.1, bandwidth=0.7, features=features if use_features else None)
    phi, _, _ = svgd.direction(target, x)
    torch.testing.assert_close(phi, brute_force_phi(target, x, features, 0.7))


# -- detailed balance, deterministically ---------------------------------------------------
def grad_of(energy, x):
    xg = x.clone().requires_grad_(True)
    return torch.autograd.grad(energy(xg).sum(), xg)[0]


@pytest.mark.parametrize("s", [0.05, 0.8])
def test_mala_log_acceptance_is_antisymmetric(s):
    """For fixed noise ξ, y = x − s∇U(x) + √(2s)ξ, and the reverse noise
    ξ' = (x − y + s∇U(y))/√(2s) that proposes x from y: log α(x→y) = −log α(y→x)."""
    sampler = MALA(s)
    x = MIX.sample(64, generator=gen(30))
    xi = torch.randn(x.shape, generator=gen(31), dtype=torch.float64)
    y, log_a = sampler.propose(MIX, x, xi)
    torch.testing.assert_close(y, x - s * grad_of(MIX, x) + math.sqrt(2 * s) * xi)
    xi_back = (x - y + s * grad_of(MIX, y)) / math.sqrt(2 * s)
    x_back, log_b = sampler.propose(MIX, y, xi_back)
    torch.testing.assert_close(x_back, x, rtol=0, atol=1e-12)
    torch.testing.assert_close(log_a + log_b, torch.zeros_like(log_a), rtol=0, atol=1e-10)
    # ... and it is the textbook ratio U(x) − U(y) + log q(x|y) − log q(y|x).
    exact = (MIX(x) - MIX(y) - 0.5 * xi_back.square().sum(1) + 0.5 * xi.square().sum(1))
    torch.testing.assert_close(log_a, exact, rtol=0, atol=1e-10)
    assert log_a.abs().max() > 0.02  # the moves are not trivially accepted


def test_mala_step_uses_the_proposal_and_its_acceptance():
    sampler = MALA(0.8)
    x = MIX.sample(256, generator=gen(32))
    new, info = sampler.step(MIX, sampler.init(MIX, x), gen(33))
    g = gen(33)
    xi = torch.randn(x.shape, generator=g, dtype=torch.float64)
    log_u = torch.rand(x.shape[0], generator=g, dtype=torch.float64).log()
    y, log_a = sampler.propose(MIX, x, xi)
    torch.testing.assert_close(info.accept_prob, log_a.clamp(max=0).exp())
    accepted = log_u < log_a
    assert torch.equal(info.accepted, accepted) and 0 < accepted.sum() < len(x)
    torch.testing.assert_close(new.x, torch.where(accepted[:, None], y, x))
    torch.testing.assert_close(new.energy, MIX(new.x))
    torch.testing.assert_close(new.grad, grad_of(MIX, new.x))


@pytest.mark.parametrize("mass", [None, torch.tensor([1.0, 2.5])], ids=["unit", "diag"])
def test_hmc_log_acceptance_is_antisymmetric(mass):
    """Leapfrog is reversible: from (y, −p₁) it returns to (x, −p₀), and
    log α(x→y) = H(x, p₀) − H(y, p₁) = −log α(y→x)."""
    sampler = HMC(0.9, n_leapfrog=5, mass=mass)
    x = MIX.sample(64, generator=gen(34))
    m = torch.ones(2, dtype=torch.float64) if mass is None else mass.double()
    p0 = torch.randn(x.shape, generator=gen(35), dtype=torch.float64) * m.sqrt()
    y, p1, log_a = sampler.propose(MIX, x, p0)
    x_back, p_back, log_b = sampler.propose(MIX, y, -p1)
    torch.testing.assert_close(x_back, x, rtol=0, atol=1e-10)
    torch.testing.assert_close(p_back, -p0, rtol=0, atol=1e-10)
    torch.testing.assert_close(log_a + log_b, torch.zeros_like(log_a), rtol=0, atol=1e-10)
    exact = (MIX(x) + 0.5 * (p0.square() / m).sum(1)) - (MIX(y) + 0.5 * (p1.square() / m).sum(1))
    torch.testing.assert_close(log_a, exact, rtol=0, atol=1e-10)
    assert log_a.abs().max() > 0.1
    # An independent leapfrog, written out here.
    xr, pr = x.clone(), p0 - 0.45 * grad_of(MIX, x)
    for i in range(5):
        xr = xr + 0.9 * pr / m
        pr = pr - (0.9 if i < 4 else 0.45) * grad_of(MIX, xr)
    torch.testing.assert_close(y, xr)
    torch.testing.assert_close(p1, pr)


# -- dual averaging ------------------------------------------------------------------------
def test_dual_averaging_first_updates_by_hand():
    """Hoffman & Gelman (2014) Alg. 5 with ε₀ = 0.5, δ = 0.6, γ = 0.05, t₀ = 10, κ = 0.75."""
    da = DualAveraging(0.6, 3)
    s0 = da.init(0.5)
    mu = math.log(5.0)
    assert (s0.t, s0.h_bar, s0.step_size, s0.mu) == (0, 0.0, pytest.approx(0.5), mu)
    s1 = da.update(s0, 0.9)
    h1 = (0.6 - 0.9) / 11
    assert s1.h_bar == pytest.approx(h1)
    assert s1.log_step == pytest.approx(mu - h1 / 0.05)
    assert s1.log_step_bar == pytest.approx(mu - h1 / 0.05)  # weight 1⁻⁰·⁷⁵ = 1
    s2 = da.update(s1, 0.2)
    h2 = (1 - 1 / 12) * h1 + (0.6 - 0.2) / 12
    log2 = mu - math.sqrt(2) / 0.05 * h2
    w = 2 ** -0.75
    assert s2.h_bar == pytest.approx(h2) and s2.log_step == pytest.approx(log2)
    assert s2.log_step_bar == pytest.approx(w * log2 + (1 - w) * s1.log_step_bar)
    s3 = da.update(s2, 0.5)  # the last adaptation step freezes the averaged step
    assert s3.log_step == s3.log_step_bar
    assert da.update(s3, 0.0) == s3  # frozen afterwards


@pytest.mark.parametrize("eps0", [0.01, 1.0, 20.0])
def test_dual_averaging_converges_on_a_known_curve(eps0):
    # Acceptance α(ε) = exp(−ε): the target δ = 0.65 is hit at ε* = −log 0.65.
    da = DualAveraging(0.65, 500)
    s = da.init(eps0)
    for _ in range(500):
        s = da.update(s, math.exp(-s.step_size))
    assert s.step_size == pytest.approx(-math.log(0.65), rel=0.03)


@pytest.mark.parametrize("target", [0.0, 1.0, 1.05, -0.1, math.nan])
def test_dual_averaging_rejects_bad_targets(target):
    with pytest.raises(ValueError, match="target_accept"):
        DualAveraging(target, 10)
    with pytest.raises(ValueError, match="adapt_steps"):
        DualAveraging(0.5, -1)


def test_hmc_with_one_leapfrog_step_is_mala():
    """One leapfrog step of size ε from momentum ξ is the MALA proposal with s = ε²/2, and
    H₀ − H₁ is MALA's log acceptance ratio (a classical identity)."""
    eps = 0.7
    x = MIX.sample(32, generator=gen(40))
    xi = torch.randn(x.shape, generator=gen(41), dtype=torch.float64)
    y_h, _, log_h = HMC(eps, n_leapfrog=1).propose(MIX, x, xi)
    y_m, log_m = MALA(eps**2 / 2).propose(MIX, x, xi)
    torch.testing.assert_close(y_h, y_m)
    torch.testing.assert_close(log_h, log_m, rtol=0, atol=1e-10)


def test_clip_grad_norm_by_hand():
    from ebmlab.samplers.base import clip_grad_norm

    g = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]], dtype=torch.float64)  # norms 5, ½, 0
    torch.testing.assert_close(clip_grad_norm(g, 1.0),
                               torch.tensor([[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]],
                                            dtype=torch.float64))
    assert clip_grad_norm(g, None) is g
    img = torch.full((2, 1, 2, 2), 2.0)  # per-chain norm 4 over all entries
    torch.testing.assert_close(clip_grad_norm(img, 2.0), torch.full((2, 1, 2, 2), 1.0))
