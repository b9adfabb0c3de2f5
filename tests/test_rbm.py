"""Gaussian–Bernoulli RBM: free energy, exact log Z, likelihood gradient, samplers."""

import math

import pytest
import torch

from ebmlab.energies import GaussianBernoulliRBM
from ebmlab.energies.rbm import hidden_states

F64 = torch.float64


def make_rbm(d: int, l: int, seed: int = 0, scale: float = 0.5) -> GaussianBernoulliRBM:
    """An RBM with non-trivial parameters (so p(h) is far from uniform)."""
    g = torch.Generator().manual_seed(seed)
    rbm = GaussianBernoulliRBM(d, l, dtype=F64)
    with torch.no_grad():
        rbm.B.copy_(scale * torch.randn(d, l, generator=g, dtype=F64))
        rbm.b.copy_(0.5 * torch.randn(d, generator=g, dtype=F64))
        rbm.c.copy_(0.5 * torch.randn(l, generator=g, dtype=F64))
    return rbm


def brute_hidden_logits(rbm: GaussianBernoulliRBM) -> tuple[torch.Tensor, torch.Tensor]:
    """All h and ``cᵀh + ½‖b + Bh‖²``, straight from the definition (no Gram trick)."""
    H = hidden_states(rbm.n_hidden)
    B, b, c = rbm.B.detach(), rbm.b.detach(), rbm.c.detach()
    means = b + H @ B.T
    return H, H @ c + 0.5 * means.square().sum(dim=1)


def grid_2d(half_width: float = 12.0, step: float = 0.05):
    t = torch.arange(-half_width, half_width + step / 2, step, dtype=F64)
    xx, yy = torch.meshgrid(t, t, indexing="ij")
    return t, torch.stack((xx.reshape(-1), yy.reshape(-1)), dim=1)


def trapz_2d(values: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    n = t.numel()
    return torch.trapezoid(torch.trapezoid(values.reshape(n, n), t, dim=1), t, dim=0)


# --------------------------------------------------------------------- energies


def test_free_energy_is_log_sum_of_joint():
    rbm = make_rbm(5, 4)
    x = torch.randn(7, 5, dtype=F64) * 2
    H = hidden_states(4)  # (16, 4)
    xr = x.repeat_interleave(len(H), dim=0)
    hr = H.repeat(len(x), 1)
    neg_joint = -rbm.joint_energy(xr, hr).reshape(len(x), len(H))
    torch.testing.assert_close(-rbm(x), torch.logsumexp(neg_joint, dim=1), rtol=0, atol=1e-12)
    # Joint energy by its formula, for one pair.
    B, b, c = rbm.B.detach(), rbm.b.detach(), rbm.c.detach()
    x0, h0 = x[0], H[5]
    expected = -(x0 @ B @ h0 + b @ x0 + c @ h0 - 0.5 * x0 @ x0)
    torch.testing.assert_close(rbm.joint_energy(x[:1], H[5:6])[0], expected)


def test_forward_is_stable_and_flattens_images():
    rbm = make_rbm(4, 3, scale=50.0)  # huge |y|: naive log(e^y + e^-y) would overflow
    x = 30 * torch.randn(6, 4, dtype=F64)
    u = rbm(x)
    assert u.shape == (6,) and torch.isfinite(u).all()
    torch.testing.assert_close(rbm(x.reshape(6, 1, 2, 2)), u)
    assert rbm.free_energy(x).shape == (6,)


def test_dtype_handling():
    rbm = GaussianBernoulliRBM(4, 3)  # default dtype (float32)
    assert rbm.B.dtype == torch.float32 and rbm.B.shape == (4, 3)
    assert rbm.b.shape == (4,) and rbm.c.shape == (3,)
    assert {n for n, _ in rbm.named_parameters()} == {"B", "b", "c"}
    x = torch.randn(5, 4)
    assert rbm(x).dtype == torch.float32
    assert rbm(x.double()).dtype == F64
    assert rbm.log_prob(x).dtype == F64
    assert rbm.log_partition().dtype == F64
    assert math.isclose(rbm.mean_log_likelihood(x, batch_size=2), rbm.log_prob(x).mean().item(),
                        rel_tol=1e-12)


def test_wrong_shapes_raise():
    rbm = GaussianBernoulliRBM(4, 3)
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        rbm(torch.randn(2, 5))
    with pytest.raises(ValueError, match="prod"):
        rbm(torch.randn(2, 1, 3, 3))
    with pytest.raises(ValueError):
        rbm(torch.randn(4))
    with pytest.raises(ValueError, match="h must have shape"):
        rbm.joint_energy(torch.randn(2, 4), torch.ones(2, 4))
    with pytest.raises(ValueError, match="h must have shape"):
        rbm.sample_visible(torch.ones(2, 2))
    with pytest.raises(ValueError, match="n_hidden"):
        GaussianBernoulliRBM(4, 0)
    with pytest.raises(ValueError, match="n_visible"):
        GaussianBernoulliRBM(2.5, 3)
    with pytest.raises(ValueError, match="x0"):
        rbm.sample(3, n_steps=1, x0=torch.randn(2, 4))


# ------------------------------------------------------------------- exact log Z


def test_log_partition_matches_2d_quadrature_and_log_prob_integrates_to_one():
    rbm = make_rbm(2, 3, seed=1)
    t, pts = grid_2d()
    with torch.no_grad():
        f = -rbm(pts)
        m = f.max()
        log_z_quad = m + torch.log(trapz_2d(torch.exp(f - m), t))
        log_z = rbm.log_partition()
        assert abs(log_z.item() - log_z_quad.item()) < 1e-9
        dens = rbm.log_prob(pts).exp()
        assert abs(trapz_2d(dens, t).item() - 1.0) < 1e-9
        # The exact mean Σ_h p(h)(b + Bh) is the mean of the density.
        mean_quad = torch.stack([trapz_2d(dens * pts[:, i], t) for i in range(2)])
        torch.testing.assert_close(rbm.exact_moments()["x"], mean_quad, rtol=0, atol=1e-9)


@pytest.mark.parametrize("chunk_size", [1, 3, 5, 64, 128, 2**14])
def test_log_partition_chunked_matches_brute_force(chunk_size):
    rbm = make_rbm(6, 7, seed=2)
    _, logits = brute_hidden_logits(rbm)
    expected = 0.5 * 6 * math.log(2 * math.pi) + torch.logsumexp(logits, dim=0)
    got = rbm.log_partition(chunk_size=chunk_size)
    assert got.dtype == F64
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)
    log_ph = rbm.hidden_log_marginal(chunk_size=chunk_size)
    torch.testing.assert_close(log_ph, logits - torch.logsumexp(logits, dim=0))


def test_log_partition_limits():
    rbm = GaussianBernoulliRBM(3, 25)
    assert rbm(torch.randn(2, 3)).shape == (2,)  # the energy itself has no limit
    for call in (rbm.log_partition, rbm.hidden_log_marginal, lambda: rbm.sample_exact(2),
                 lambda: rbm.log_prob(torch.randn(2, 3))):
        with pytest.raises(ValueError, match="n_hidden"):
            call()
    with pytest.raises(ValueError, match="chunk_size"):
        GaussianBernoulliRBM(3, 2).log_partition(chunk_size=0)


def test_log_partition_moderate_hidden_is_fast_and_consistent():
    rbm = make_rbm(10, 16, seed=3, scale=0.2)
    with torch.no_grad():
        full = rbm.log_partition()
        chunked = rbm.log_partition(chunk_size=1000)
    assert torch.isfinite(full)
    torch.testing.assert_close(full, chunked, rtol=0, atol=1e-10)


# ------------------------------------------------------------ likelihood gradient


def test_exact_likelihood_gradient_matches_autograd():
    rbm = make_rbm(3, 4, seed=4)
    x = torch.randn(50, 3, dtype=F64) + 0.5
    loss = rbm.log_prob(x).mean()
    gB, gb, gc = torch.autograd.grad(loss, [rbm.B, rbm.b, rbm.c])

    with torch.no_grad():
        B, b, c = rbm.B, rbm.b, rbm.c
        # Data term: ∂f/∂B = x tanh(y)ᵀ, ∂f/∂b = x, ∂f/∂c = tanh(y), y = Bᵀx + c.
        t = torch.tanh(x @ B + c)
        data_B, data_b, data_c = x.T @ t / len(x), x.mean(0), t.mean(0)
        # Model term by enumeration: p(h) ∝ exp(cᵀh + ½‖b+Bh‖²), E[x|h] = b + Bh.
        H, logits = brute_hidden_logits(rbm)
        p = torch.softmax(logits, dim=0)
        means = b + H @ B.T  # (2^ℓ, d)
        model_B = torch.einsum("k,ki,kj->ij", p, means, H)
        model_b = p @ means
        model_c = p @ H
        moments = rbm.exact_moments()

    torch.testing.assert_close(moments["xh"], model_B)
    torch.testing.assert_close(moments["x"], model_b)
    torch.testing.assert_close(moments["h"], model_c)
    torch.testing.assert_close(gB, data_B - model_B, rtol=0, atol=1e-10)
    torch.testing.assert_close(gb, data_b - model_b, rtol=0, atol=1e-10)
    torch.testing.assert_close(gc, data_c - model_c, rtol=0, atol=1e-10)


# --------------------------------------------------------------------- samplers


def _assert_mean_within(samples: torch.Tensor, mean: torch.Tensor, z: float = 4.5) -> None:
    se = samples.std(dim=0) / math.sqrt(len(samples))
    err = (samples.mean(dim=0) - mean).abs() / se
    assert (err < z).all(), f"standardised errors {err.tolist()}"


def test_sample_exact_moments():
    rbm = make_rbm(3, 4, seed=5, scale=0.8)
    g = torch.Generator().manual_seed(0)
    x, h = rbm.sample_exact(20_000, generator=g, return_hidden=True)
    assert x.shape == (20_000, 3) and h.shape == (20_000, 4)
    assert set(h.unique().tolist()) == {-1.0, 1.0}
    m = rbm.exact_moments()
    _assert_mean_within(x, m["x"])
    _assert_mean_within(h, m["h"])
    # Products x_i h_j against E[x hᵀ].
    _assert_mean_within((x[:, :, None] * h[:, None, :]).reshape(len(x), -1), m["xh"].reshape(-1))
    # x | h ~ N(b + Bh, I): residuals are standard normal.
    r = x - (rbm.b + h @ rbm.B.T).detach()
    _assert_mean_within(r, torch.zeros(3, dtype=F64))
    assert torch.allclose(r.var(dim=0), torch.ones(3, dtype=F64), atol=0.05)
    # Hidden-state frequencies follow p(h).
    k = (((h + 1) / 2) * 2 ** torch.arange(4, dtype=F64)).sum(dim=1).long()
    freq = torch.bincount(k, minlength=16).to(F64) / len(h)
    p = rbm.hidden_log_marginal().exp()
    assert ((freq - p).abs() < 4.5 * torch.sqrt(p * (1 - p) / len(h)) + 1e-12).all()
    # Deterministic given the generator.
    a = rbm.sample_exact(5, generator=torch.Generator().manual_seed(3))
    b = rbm.sample_exact(5, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_gibbs_matches_exact_moments_after_burn_in():
    # Moderate coupling: p(h) is peaked but Gibbs mixes within a few dozen sweeps.
    # (Strongly coupled RBMs mix slowly; e.g. scale=0.8 needs ~300 sweeps.)
    rbm = make_rbm(3, 4, seed=5, scale=0.5)
    g = torch.Generator().manual_seed(1)
    x = rbm.sample(8000, n_steps=50, generator=g)  # independent chains, last state of each
    assert x.shape == (8000, 3) and x.dtype == F64
    _assert_mean_within(x, rbm.exact_moments()["x"])
    # E[x_i²] = Σ_h p(h)(b + Bh)_i² + 1.
    H, logits = brute_hidden_logits(rbm)
    means = rbm.b.detach() + H @ rbm.B.detach().T
    _assert_mean_within(x.square(), torch.softmax(logits, 0) @ means.square() + 1.0)
    # Deterministic given the generator; image-shaped x0 accepted.
    a = rbm.sample(4, n_steps=3, generator=torch.Generator().manual_seed(2))
    b = rbm.sample(4, n_steps=3, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    img = GaussianBernoulliRBM(4, 2).sample(3, n_steps=2, x0=torch.zeros(3, 1, 2, 2))
    assert img.shape == (3, 4)


def test_conditional_hidden_probabilities():
    rbm = make_rbm(2, 3, seed=6)
    x = torch.tensor([[0.3, -1.2]], dtype=F64).expand(40_000, 2)
    h = rbm.sample_hidden(x, generator=torch.Generator().manual_seed(0))
    p_plus = torch.sigmoid(2 * rbm.hidden_preactivation(x[:1]))[0].detach()
    freq = (h > 0).to(F64).mean(dim=0)
    assert ((freq - p_plus).abs() < 4.5 * torch.sqrt(p_plus * (1 - p_plus) / len(h))).all()
    # p(h|x) ∝ exp(-joint_energy(x, h)): compare with enumeration.
    H = hidden_states(3)
    logp = -rbm.joint_energy(x[:1].expand(len(H), 2), H).detach()
    p = torch.softmax(logp, 0)
    torch.testing.assert_close(p @ ((H + 1) / 2), p_plus)


def test_visible_mean_is_b_plus_Bh_of_a_hidden_draw_and_the_mean_of_the_next_draw():
    from ebmlab.capabilities import has_visible_mean

    rbm = make_rbm(6, 3)
    assert has_visible_mean(rbm)
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(1), dtype=F64)
    h = rbm.sample_hidden(x, torch.Generator().manual_seed(2))
    mean = rbm.visible_mean(x, torch.Generator().manual_seed(2))
    assert torch.allclose(mean, rbm.b + h @ rbm.B.T)
    # E[x' | x] over the chain's next draw: 20000 draws, tolerance 4.5 MCSE (sd 1 per pixel
    # around b + Bh, plus the spread of b + Bh over h ~ p(h | x)).
    n = 20000
    xs = x[:1].expand(n, 6)
    g = torch.Generator().manual_seed(3)
    draws = rbm.gibbs(xs, 1, g)
    means = rbm.visible_mean(xs, torch.Generator().manual_seed(4))
    se = (draws.var(0) / n).sqrt() + (means.var(0) / n).sqrt()
    assert ((draws.mean(0) - means.mean(0)).abs() < 4.5 * se).all()
