"""Diagnostics: ESS, split-R̂ and MCSE against known answers; acceptance; trace recorder."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ebmlab.diagnostics import (
    TraceRecorder,
    acceptance_rate,
    effective_sample_size,
    ess_bulk,
    ess_tail,
    mcse_mean,
    rank_normalize,
    rank_normalized_rhat,
    split_rhat,
    summarize,
)
from ebmlab.energies import Gaussian
from ebmlab.samplers import MALA, Langevin, StepInfo


def ar1(rho: float, n: int, m: int, seed: int = 0, d: int = 1) -> np.ndarray:
    """Stationary AR(1) chains ``x_t = ρ x_{t−1} + ε_t``, shape (n, m, d)."""
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal((n, m, d))
    x = np.empty((n, m, d))
    x[0] = eps[0] / math.sqrt(1 - rho**2)
    for t in range(1, n):
        x[t] = rho * x[t - 1] + eps[t]
    return x


# -- ESS ---------------------------------------------------------------------------------


def test_ess_iid_is_total_draws():
    x = np.random.default_rng(0).standard_normal((1000, 100, 2))
    ess = effective_sample_size(x)
    assert ess.shape == (2,)
    assert np.all(np.abs(ess / 100_000 - 1) < 0.1), ess


@pytest.mark.parametrize("rho", [0.5, 0.8, -0.3])
def test_ess_ar1(rho):
    n, m = 2000, 50
    x = ar1(rho, n, m, seed=1, d=3)
    expected = n * m * (1 - rho) / (1 + rho)
    for split in (True, False):
        ess = effective_sample_size(x, split=split)
        assert np.all(np.abs(ess / expected - 1) < 0.15), (ess, expected)


def test_ess_shapes_and_inputs():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((200, 4, 3, 2))
    ess = effective_sample_size(x)
    assert ess.shape == (3, 2)
    t = torch.from_numpy(x).float()
    np.testing.assert_allclose(effective_sample_size(t), effective_sample_size(t.numpy()))
    assert effective_sample_size(x[:, :, 0, 0]).shape == ()  # (n, chains)
    single = effective_sample_size(rng.standard_normal(4000))  # one chain
    assert single.shape == () and abs(float(single) / 4000 - 1) < 0.2
    # Columns are independent: blocks over dims give the per-dim answer.
    np.testing.assert_allclose(ess[1, 0], effective_sample_size(x[:, :, 1, 0]))


def test_ess_stuck_chains_and_constant():
    # Two groups of chains at different means: the between-chain variance kills the ESS.
    x = np.random.default_rng(3).standard_normal((500, 8, 1))
    x[:, :4] += 3.0
    assert effective_sample_size(x)[0] < 100
    assert np.isnan(effective_sample_size(np.ones((10, 2))))


@pytest.mark.parametrize(
    ("x", "match"),
    [(np.zeros(()), "shape"), (np.zeros((3, 2)), "n_draws"),
     (np.array([[0.0], [1.0], [np.nan], [2.0]]), "NaN")],
)
def test_ess_bad_input(x, match):
    with pytest.raises(ValueError, match=match):
        effective_sample_size(x)


# -- split-R̂ and MCSE ---------------------------------------------------------------------


def test_rhat_iid_near_one():
    x = np.random.default_rng(4).standard_normal((1000, 100, 2))
    r = split_rhat(x)
    assert r.shape == (2,) and np.all(np.abs(r - 1) < 0.01)


def test_rhat_detects_disagreeing_chains():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((500, 4, 2))
    x[:, :, 0] += np.arange(4)  # chains centred at 0, 1, 2, 3
    x[:, :, 1] += np.linspace(0, 4, 500)[:, None]  # same drift in every chain
    r = split_rhat(x)
    assert r[0] > 1.1
    assert r[1] > 1.1  # only the split exposes a common drift


def test_mcse_mean():
    iid = np.random.default_rng(6).standard_normal((1000, 100, 2))
    np.testing.assert_allclose(mcse_mean(iid), 1 / math.sqrt(100_000), rtol=0.1)
    rho, n, m = 0.7, 2000, 20
    x = ar1(rho, n, m, seed=7)
    sd = 1 / math.sqrt(1 - rho**2)
    expected = sd * math.sqrt((1 + rho) / ((1 - rho) * n * m))
    np.testing.assert_allclose(mcse_mean(x), expected, rtol=0.12)
    s = summarize(x)
    assert set(s) == {"mean", "sd", "mcse", "ess", "rhat", "ess_bulk", "ess_tail", "rhat_rank"}
    assert abs(float(s["mean"][0])) < 5 * float(s["mcse"][0])


def test_mala_trajectory_mean_within_mcse():
    """The intended use: a sampler's trajectory against the truth in units of MCSE."""
    g = torch.Generator().manual_seed(0)
    target = Gaussian([1.0, -2.0], [[1.0, 0.5], [0.5, 2.0]])
    x0 = target.sample(50, generator=g)
    traj = MALA(0.4).trajectory(target, x0, 400, generator=g)
    s = summarize(traj)
    assert np.all(np.abs(s["mean"] - np.array([1.0, -2.0])) < 5 * s["mcse"])
    assert np.all(s["rhat"] < 1.05)
    assert np.all(s["ess"] < 400 * 50)  # correlated draws


# -- acceptance ------------------------------------------------------------------------------


def test_acceptance_rate_inputs():
    acc = torch.tensor([True, False, True, True])
    assert acceptance_rate(acc) == 0.75
    assert acceptance_rate([acc, ~acc]) == 0.5
    assert acceptance_rate(np.array([[0.2, 0.4], [0.6, 0.8]])) == pytest.approx(0.5)
    np.testing.assert_allclose(acceptance_rate([acc, acc], per_chain=True), [1, 0, 1, 1])
    infos = [StepInfo(energy=torch.zeros(2), grad_norm=torch.zeros(2),
                      accept_prob=torch.tensor([0.5, 1.0]), accepted=torch.tensor([True, True]))]
    assert acceptance_rate(infos) == 0.75  # the probabilities, not the coin flips
    assert acceptance_rate(infos[0]) == 0.75
    only_flags = StepInfo(energy=torch.zeros(2), grad_norm=torch.zeros(2),
                          accepted=torch.tensor([True, False]))
    assert acceptance_rate([only_flags]) == 0.5


def test_acceptance_rate_errors():
    unadjusted = StepInfo(energy=torch.zeros(2), grad_norm=torch.zeros(2))
    with pytest.raises(ValueError, match="acceptance"):
        acceptance_rate([unadjusted])
    with pytest.raises(ValueError, match="empty"):
        acceptance_rate([])
    with pytest.raises(ValueError, match="per_chain"):
        acceptance_rate([torch.ones(2), torch.ones(3)], per_chain=True)


# -- TraceRecorder -----------------------------------------------------------------------------


def test_trace_recorder_with_mala():
    g = torch.Generator().manual_seed(1)
    energy = Gaussian([0.0, 0.0])
    x0 = torch.randn(64, 2, generator=g, dtype=torch.float64) * 3
    rec = TraceRecorder(keep_chains=3)
    MALA(0.3).run(energy, x0, 100, generator=g, callback=rec)
    d = rec.as_dict()
    assert len(rec) == 100
    np.testing.assert_array_equal(d["step"], np.arange(100))
    for key in ("energy", "grad_norm", "accept_prob", "step_size"):
        assert d[key].shape == (100,) and d[key].dtype == np.float64
    assert 0 < d["accept_prob"].mean() < 1 and 0 < rec.acceptance_rate() < 1
    assert d["energy"][:5].mean() > d["energy"][-20:].mean()  # started over-dispersed
    assert d["states"].shape == (100, 3, 2)
    # The kept states are the trajectory of the first chains.
    g2 = torch.Generator().manual_seed(1)
    torch.randn(64, 2, generator=g2, dtype=torch.float64)  # the draw of x0 above
    traj = MALA(0.3).trajectory(energy, x0, 100, generator=g2)
    np.testing.assert_allclose(d["states"], traj[:, :3].numpy())
    # The recorded gradient norm is the chains' mean ‖∇U(x)‖ = ‖x‖ at each step's start.
    assert d["grad_norm"][0] == pytest.approx(x0.norm(dim=1).mean().item())
    assert rec.r_t() == pytest.approx(rec.r_t(0.3))


def test_r_t_by_hand():
    """r_t = meanₗ sₗ · meanₘ ‖∇U(Y_m^(ℓ))‖ on hand-made steps."""
    rec = TraceRecorder()
    steps = [(0.1, [1.0, 3.0]), (0.2, [2.0, 4.0]), (0.3, [0.0, 2.0])]  # chain means 2, 3, 1
    for i, (s, g) in enumerate(steps):
        rec(i, None, StepInfo(energy=torch.zeros(2), grad_norm=torch.tensor(g),  # type: ignore
                              step_size=s))
    assert rec.r_t() == pytest.approx((0.1 * 2 + 0.2 * 3 + 0.3 * 1) / 3)  # 0.3667
    assert rec.r_t(0.5) == pytest.approx(0.5 * 2.0)  # a given step: s · overall mean
    assert rec.as_dict()["grad_norm"] == pytest.approx([2.0, 3.0, 1.0])


def test_trace_recorder_every_reset_and_unadjusted():
    g = torch.Generator().manual_seed(2)
    energy = Gaussian([0.0, 0.0])
    rec = TraceRecorder(every=10)
    x0 = torch.randn(16, 2, generator=g, dtype=torch.float64)
    Langevin(0.05).run(energy, x0, 95, generator=g, callback=rec)
    d = rec.as_dict()
    np.testing.assert_array_equal(d["step"], np.arange(0, 95, 10))
    assert "accept_prob" not in d and "states" not in d
    with pytest.raises(ValueError, match="acceptance"):
        rec.acceptance_rate()
    assert rec.r_t(0.05) > 0
    rec.reset()
    assert len(rec) == 0 and rec.as_dict()["energy"].shape == (0,)
    with pytest.raises(ValueError, match="recorded"):
        rec.r_t(0.1)
    with pytest.raises(ValueError, match="every"):
        TraceRecorder(every=0)
    with pytest.raises(ValueError, match="keep_chains"):
        TraceRecorder(keep_chains=-1)
    rec(0, None, StepInfo(energy=torch.zeros(2), grad_norm=torch.ones(2)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="step_size"):
        rec.r_t()
    with pytest.raises(ValueError, match="step_size"):
        rec.r_t(-1.0)


# -- rank-normalised R̂, bulk and tail ESS (Vehtari et al. 2021), against ArviZ ------------
#
# Reference numbers computed once with ArviZ 0.23.4 (numpy 2.4.6, scipy 1.17.1) in a
# throw-away virtual environment, on the chains the two functions below generate:
#     post = np.moveaxis(x, 1, 0)            # ArviZ wants (chain, draw)
#     az.ess(post[..., j], method="mean" | "bulk" | "tail"), az.rhat(post[..., j], method="rank")
# ebmlab matches them to ~1e-15 (also on 30 random shapes with ties, odd lengths, one chain;
# the one difference: with a single chain ArviZ's R̂ is NaN, ebmlab's splits it in two).


def chains_heavy_tailed(seed: int = 20240) -> np.ndarray:
    """M = 4 chains of N = 501 (odd) draws of AR(1) with t₃ noise, persistence 0.3 / 0.9
    / 0.6 per dim; chain 0 shifted by 1.5 in the last dim. Shape (draws, chains, dims)."""
    rng = np.random.default_rng(seed)
    m, n, d = 4, 501, 3
    x = np.zeros((n, m, d))
    phi = np.array([0.3, 0.9, 0.6])
    e = rng.standard_t(df=3, size=(n, m, d))
    for t in range(1, n):
        x[t] = phi * x[t - 1] + e[t]
    x[:, 0, 2] += 1.5
    return x


def chains_ties_scale(seed: int = 11) -> np.ndarray:
    """M = 3 chains of N = 300 AR(0.5) draws rounded to integers (ties); chain 1 is 3×
    wider, a difference in scale only."""
    rng = np.random.default_rng(seed)
    n, m, d = 300, 3, 2
    x = np.zeros((n, m, d))
    e = rng.standard_normal((n, m, d)) * 2.0
    for t in range(1, n):
        x[t] = 0.5 * x[t - 1] + e[t]
    x[:, 1, :] *= 3.0
    return np.round(x)


ARVIZ = {
    "heavy_tailed": {
        "ess_mean": [1084.2283187796604, 119.65115057288483, 96.16750493168759],
        "ess_bulk": [968.4828346512686, 117.99178022532763, 60.796954966278825],
        "ess_tail": [1509.1988232683234, 253.8700080425081, 815.7326368209667],
        "rhat_rank": [1.0014324583298015, 1.0486438800624414, 1.0703895146066043],
        "rhat_split": [1.0017001149182272, 1.0496716248444675, 1.0554157230019812],
    },
    "ties_scale": {
        "ess_mean": [372.006100822613, 290.2894869017971],
        "ess_bulk": [374.92444140738684, 311.98615748095375],
        "ess_tail": [28.634601151797764, 43.90409443408482],
        "rhat_rank": [1.2069803301090078, 1.2077861351154593],
    },
}


@pytest.mark.parametrize("case", ["heavy_tailed", "ties_scale"])
def test_rank_normalized_diagnostics_match_arviz(case):
    x = {"heavy_tailed": chains_heavy_tailed, "ties_scale": chains_ties_scale}[case]()
    ours = {"ess_mean": effective_sample_size(x), "ess_bulk": ess_bulk(x),
            "ess_tail": ess_tail(x), "rhat_rank": rank_normalized_rhat(x),
            "rhat_split": split_rhat(x)}
    for name, expected in ARVIZ[case].items():
        np.testing.assert_allclose(ours[name], expected, rtol=1e-9, err_msg=name)


def test_tail_rhat_sees_chains_that_differ_in_scale_only():
    x = chains_ties_scale()
    assert np.all(split_rhat(x) < 1.02)  # the classic R̂ compares means: it misses it
    assert np.all(rank_normalized_rhat(x) > 1.15)  # the folded (tail) R̂ does not


def test_rank_normalize_is_normal_scores_of_ranks():
    x = np.array([[3.0], [1.0], [2.0], [2.0]])  # one chain; a tie shares rank 2.5
    z = rank_normalize(x)[:, 0]
    from statistics import NormalDist

    ranks = [4.0, 1.0, 2.5, 2.5]
    expected = [NormalDist().inv_cdf((r - 0.375) / (4 + 0.25)) for r in ranks]
    np.testing.assert_allclose(z, expected, rtol=1e-12)


def test_rank_diagnostics_shapes_one_chain_and_iid():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((400, 4, 3, 2))
    for f in (ess_bulk, ess_tail, rank_normalized_rhat):
        assert f(x).shape == (3, 2)
    iid = rng.standard_normal((1000, 8, 1))
    assert abs(float(ess_bulk(iid)[0]) / 8000 - 1) < 0.1
    assert abs(float(rank_normalized_rhat(iid)[0]) - 1) < 0.01
    one = rng.standard_normal((200, 1))  # one chain is split into two halves
    assert np.isfinite(rank_normalized_rhat(one)) and np.isfinite(ess_tail(one))
    with pytest.raises(ValueError, match="probs"):
        ess_tail(iid, probs=(0.0, 0.95))
