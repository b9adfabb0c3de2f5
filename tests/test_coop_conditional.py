"""cCoopNets and conditional VALS (image completion): the masked pairs, the conditional
networks, a replayed step (only the missing pixels are revised), the cVAE loss against its
formula, completion and model samples, learning against the closed-form conditional mean
of a Gaussian, config errors and the CLI path train → inpaint → sample."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ebmlab import inpaint as ip
from ebmlab import load_run
from ebmlab.cli import main
from ebmlab.config import ConfigError, load_config
from ebmlab.energies import MLPEnergy
from ebmlab.energies.conditional import ConditionalEnergy, Conditioned, stack_condition
from ebmlab.experiment import RunConfig
from ebmlab.generators import MLPEncoder, kl_standard_normal
from ebmlab.generators.conditional import ConditionalMLPGenerator
from ebmlab.methods import ConditionalCoopNets, ConditionalVALS
from ebmlab.methods.coop_conditional import check_mask_kinds, draw_masks, masked_pairs
from ebmlab.samplers import Langevin
from ebmlab.samplers.masked import sample_masked
from ebmlab.train import start_run

SHAPE = (1, 8, 8)


def _energy(shape=SHAPE, sd: float | None = 3.0) -> ConditionalEnergy:
    d = int(np.prod(shape))
    return ConditionalEnergy(MLPEnergy(3 * d, width=16, depth=2), sd)


def _generator(shape=SHAPE, latent: int = 3) -> ConditionalMLPGenerator:
    return ConditionalMLPGenerator(latent, shape, width=16, depth=1)


# -- masked pairs and the conditional networks -------------------------------------------


def test_drawn_masks_are_the_named_masks_and_pairs_hide_the_missing_pixels():
    kinds = ("center", "bottom_half", "random:0.25", "all")
    rng = torch.Generator().manual_seed(0)
    mask = draw_masks(kinds, SHAPE, 400, rng)
    assert mask.shape == (400, *SHAPE) and mask.dtype == torch.bool
    center = ip.named_mask("center", SHAPE, 1)[0]
    bottom = ip.named_mask("bottom_half", SHAPE, 1)[0]
    counts = {k: 0 for k in kinds}
    for row in mask:
        if torch.equal(row, center):
            counts["center"] += 1
        elif torch.equal(row, bottom):
            counts["bottom_half"] += 1
        elif bool(row.all()):
            counts["all"] += 1
        else:
            assert int(row.sum()) == 16  # round(0.25 · 64) random pixels
            counts["random:0.25"] += 1
    assert all(60 < c < 140 for c in counts.values()), counts  # ≈ 100 each (uniform)
    again = draw_masks(("random:0.5",), SHAPE, 8, rng)  # new pixels at every call
    assert not torch.equal(again, draw_masks(("random:0.5",), SHAPE, 8, rng))
    x = torch.randn(400, *SHAPE)
    c, m = masked_pairs(x, mask)
    assert m.dtype == x.dtype and torch.equal(m, mask.to(x.dtype))
    assert torch.equal(c[~mask], x[~mask]) and bool((c[mask] == 0).all())
    stacked = stack_condition(x, c, m)
    assert stacked.shape == (400, 3, 8, 8)
    assert torch.equal(stacked[:, 0:1], x) and torch.equal(stacked[:, 1:2], c)
    assert torch.equal(stacked[:, 2:3], m)
    vec = draw_masks(("random:0.5",), (4,), 5, rng)
    assert vec.shape == (5, 4) and bool((vec.sum(1) == 2).all())


def test_conditional_energy_and_generator_formulas_and_nothing_observed():
    torch.manual_seed(0)
    energy, g = _energy(), _generator()
    x = torch.randn(6, *SHAPE)
    mask = ip.named_mask("center", SHAPE, 6)
    c, m = masked_pairs(x, mask)
    ref = energy.net(torch.cat((x, c, m), 1)) + x.flatten(1).square().sum(1) / (2 * 9.0)
    torch.testing.assert_close(energy(x, c, m), ref)
    torch.testing.assert_close(Conditioned(energy, c, m)(x), ref)
    # U(x) and g(z) are the conditionals with nothing observed (c = 0, m = 1)
    torch.testing.assert_close(energy(x), energy(x, torch.zeros_like(x), torch.ones_like(x)))
    z = torch.randn(6, 3)
    out = g(z, c, m)
    assert out.shape == (6, *SHAPE)
    torch.testing.assert_close(out, g.net(torch.cat((z, c.flatten(1), m.flatten(1)), 1))
                               .reshape(6, *SHAPE))
    torch.testing.assert_close(g(z), g(z, torch.zeros_like(x), torch.ones_like(x)))
    with pytest.raises(ValueError, match="both"):
        energy(x, c)
    with pytest.raises(ValueError, match="chains for"):
        Conditioned(energy, c, m)(x[:2])
    with pytest.raises(ValueError, match="must have shape"):
        g(z, c[:, :, :4], m[:, :, :4])


def test_mask_kinds_are_checked_against_the_data():
    assert check_mask_kinds(["center", "all"], SHAPE) == ("center", "all")
    with pytest.raises(ValueError, match="'centre' is not a mask kind"):
        check_mask_kinds(["centre"], SHAPE)
    with pytest.raises(ValueError, match="needs image data"):
        check_mask_kinds(["bottom_half"], (4,))
    with pytest.raises(ValueError, match="at least one"):
        check_mask_kinds([], SHAPE)


# -- the updates -------------------------------------------------------------------------


def test_ccoopnets_step_revises_only_the_missing_pixels_of_g_and_regresses_on_them():
    """Negatives = K sampler steps on U(· | c, m) over the missing pixels only, from
    x_o ⊕ g(ẑ, c, m)_m; observed pixels stay the data's bit for bit. Generator loss (K_z = 0)
    mean Σ m (x̃ − g(ẑ, c, m))²/(2σ²); energy loss mean U(x | c, m) − mean U(x̃ | c, m)."""
    torch.manual_seed(0)
    energy, g, sampler = _energy(), _generator(), Langevin(0.05)
    kinds = ["center", "bottom_half", "random:0.5"]
    method = ConditionalCoopNets(energy, g, sampler, Langevin(0.005), n_steps=4,
                                 generator_sd=0.3, masks=kinds)
    x = torch.randn(12, *SHAPE)
    out = method.step(x, torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)
    mask = draw_masks(tuple(kinds), SHAPE, 12, gen)
    c, m = masked_pairs(x, mask)
    z = torch.randn(12, 3, generator=gen)
    with torch.no_grad():
        x_hat = torch.where(mask, g(z, c, m), x)
    x_tilde = sample_masked(sampler, Conditioned(energy, c, m), x_hat, mask, 4, generator=gen)
    assert out.negatives is not None
    torch.testing.assert_close(out.negatives, x_tilde)
    assert torch.equal(out.negatives[~mask], x[~mask])  # observed: the image's own
    assert bool((out.negatives[mask] != x_hat[mask]).all())  # missing: revised
    loss_g = ((m * (x_tilde - g(z, c, m))).flatten(1).square().sum(1) / (2 * 0.09)).mean()
    torch.testing.assert_close(out.losses["generator"], loss_g)
    torch.testing.assert_close(out.losses["energy"],
                               energy(x, c, m).mean() - energy(x_tilde, c, m).mean())
    assert out.metrics["missing"] == pytest.approx(float(m.mean()))
    # data_noise: the pairs are made from x + N(0, s²) (drawn first from the stream)
    method.data_noise = 0.1
    noisy = method.step(x, torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)
    x_noisy = x + 0.1 * torch.randn(x.shape, generator=gen)
    mask = draw_masks(tuple(kinds), SHAPE, 12, gen)
    assert noisy.negatives is not None
    assert torch.equal(noisy.negatives[~mask], x_noisy[~mask])
    method.data_noise = 0.0
    # K_z > 0: alternating back-propagation moves the latent
    method.inference_steps = 3
    assert method.step(x, torch.Generator().manual_seed(7)).metrics["inference_shift"] > 0


def test_cvals_loss_is_masked_reconstruction_plus_weighted_kl():
    torch.manual_seed(0)
    g, enc = _generator(), MLPEncoder((3, 8, 8), 3, width=16)
    method = ConditionalVALS(_energy(), g, enc, Langevin(0.01), n_steps=2, generator_sd=0.4,
                             kl_weight=2.5, masks=["center"])
    x = torch.randn(10, *SHAPE)
    c, m = masked_pairs(x, ip.named_mask("center", SHAPE, 10))
    loss, recon, kl = method.cvae_loss(x, c, m, torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(3)
    mean, log_var = enc(torch.cat((x, c, m), 1))
    z = mean + (0.5 * log_var).exp() * torch.randn(mean.shape, generator=gen)
    recon_ref = (m * (x - g(z, c, m))).flatten(1).square().sum(1) / (2 * 0.4**2)
    torch.testing.assert_close(recon, recon_ref)
    torch.testing.assert_close(kl, kl_standard_normal(mean, log_var))
    torch.testing.assert_close(loss, (recon_ref + 2.5 * kl).mean())
    # the missing pixels of the condition do not matter; those of x do (only they are fitted)
    changed = x.clone()
    changed[m.bool()] += 1.0
    other = method.cvae_loss(changed, c, m, torch.Generator().manual_seed(3))[1].detach()
    assert float(other.sum()) != pytest.approx(float(recon.detach().sum()))
    vae = {id(p) for p in method.param_groups()["vae"]}
    assert vae == {id(p) for p in [*g.parameters(), *enc.parameters()]}
    out = method.step(x, torch.Generator().manual_seed(1))
    assert set(out.losses) == {"energy", "vae"} and out.metrics["kl"] >= 0


# -- completion and model samples --------------------------------------------------------


@pytest.mark.parametrize("cls", [ConditionalCoopNets, ConditionalVALS])
def test_completion_starts_at_the_conditional_generator_and_revises_the_missing_pixels(cls):
    torch.manual_seed(0)
    energy, g, sampler = _energy(), _generator(), Langevin(0.05)
    if cls is ConditionalCoopNets:
        method = cls(energy, g, sampler, Langevin(0.005), n_steps=5)
    else:
        method = cls(energy, g, MLPEncoder((3, 8, 8), 3, width=8), sampler, n_steps=5)
    x = torch.randn(6, *SHAPE)
    mask = ip.named_mask("bottom_half", SHAPE, 6)
    c, m = masked_pairs(x, mask)
    start = method.complete(x, mask, n_steps=0, rng=torch.Generator().manual_seed(2))
    z = torch.randn(6, 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(start, torch.where(mask, g(z, c, m), x))
    out = method.complete(x, mask, rng=torch.Generator().manual_seed(2))
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(6, 3, generator=gen)
    with torch.no_grad():
        x0 = torch.where(mask, g(z, c, m), x)
    ref = sample_masked(sampler, Conditioned(energy, c, m), x, mask, 5, x0=x0, generator=gen)
    torch.testing.assert_close(out, ref)
    assert torch.equal(out[~mask], x[~mask])
    # the values of x at the missing pixels are not part of the condition
    hidden = x.clone()
    hidden[mask] = 50.0
    torch.testing.assert_close(method.complete(hidden, mask, rng=torch.Generator().manual_seed(2)),
                               torch.where(mask, out, hidden))


def test_model_samples_are_the_conditional_with_nothing_observed():
    torch.manual_seed(0)
    energy, g, sampler = _energy(), _generator(), Langevin(0.05)
    method = ConditionalCoopNets(energy, g, sampler, Langevin(0.005), n_steps=4)
    assert method.energy_model() is energy  # U(x) := U(x | c = 0, m = 1)
    x = method.sample(5, rng=torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        x0 = g(torch.randn(5, 3, generator=gen), torch.zeros(5, *SHAPE), torch.ones(5, *SHAPE))
    all_missing = torch.ones(5, *SHAPE, dtype=torch.bool)
    ref = sample_masked(sampler, Conditioned(energy, torch.zeros_like(x0), all_missing.float()),
                        x0, all_missing, 4, generator=gen)
    torch.testing.assert_close(x, ref)


# -- learning ----------------------------------------------------------------------------

RHO = 0.9


def _gaussian_data(path, n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four coordinates, pairwise correlation ρ (Σ = (1 − ρ) I + ρ 11ᵀ), mean 1."""
    cov = (1 - RHO) * np.eye(4) + RHO * np.ones((4, 4))
    x = np.random.default_rng(seed).multivariate_normal(np.ones(4), cov, size=n)
    np.save(path, x.astype(np.float32))
    return x, cov


def _conditional_mean(x: np.ndarray, mask: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """``E[x_m | x_o] = μ_m + Σ_mo Σ_oo⁻¹ (x_o − μ_o)`` per row."""
    out = x.copy()
    for i, (row, miss) in enumerate(zip(x, mask, strict=True)):
        o = ~miss
        out[i, miss] = 1 + cov[np.ix_(miss, o)] @ np.linalg.solve(cov[np.ix_(o, o)], row[o] - 1)
    return out


@pytest.mark.parametrize("name", ["ccoopnets", "cvals"])
def test_learning_brings_completions_to_the_conditional_mean(tmp_path, name):
    """Half of four strongly correlated Gaussian coordinates missing (random:0.5): the mean
    of 8 completions of the trained model approaches the exact conditional mean (its MSE
    on the missing coordinates at most 1.6× the Bayes floor, that of the exact conditional
    mean, ≈ 0.07), the untrained model's is far from it."""
    _, cov = _gaussian_data(tmp_path / "g.npy")
    sets = ["data.name=npy", f"data.path={tmp_path / 'g.npy'}", "model.width=32",
            "model.depth=2", "generator.width=32", "generator.latent_dim=2",
            "method.masks=['random:0.5']", "method.n_steps=10", "train.batch_size=100",
            "train.iterations=100000", "train.lr_schedule=constant", "train.progress=false",
            "train.plot_every=0", "samplers.negatives.step_size=0.01", "train.lr=2e-3"]
    if name == "cvals":
        sets += ["encoder.width=32", "method.generator_sd=0.1"]
    cfg = load_config(RunConfig, overrides=[f"method.name={name}", *sets])
    trainer = start_run(cfg, tmp_path / "run")
    data = trainer.data
    test = data.to_data_space(data.test).double()[:200]
    mask = ip.named_mask("random:0.5", (4,), test.shape[0], seed=1, image=False)
    best = torch.from_numpy(_conditional_mean(test.numpy(), mask.numpy(), cov))

    def mse(pred: torch.Tensor) -> float:
        return float((pred - test)[mask].square().mean())

    def completion_mse() -> float:
        return mse(ip.complete_images(trainer.method, data, test.float(), mask, samples=8,
                                      n_steps=30, seed=0).double())

    floor = mse(best)
    before = completion_mse()
    trainer.fit(until=500)  # a checkpoint, no final evaluation
    after = completion_mse()
    assert floor == pytest.approx(1 - 2 * RHO**2 / (1 + RHO), abs=0.02)  # Σ_m|o
    assert before > 3 * floor, (floor, before)
    assert after < 1.6 * floor, (floor, before, after)


# -- config errors and the CLI -----------------------------------------------------------

TOY = ["data.name=8gaussians", "data.n_train=500", "data.n_test=100", "model.width=16",
       "model.depth=2", "train.batch_size=50", "train.progress=false", "train.plot_every=0",
       "train.longrun_factor=1", "generator.width=16", "generator.latent_dim=2"]


@pytest.mark.parametrize("sets, message", [
    (["method.name=ccoopnets", "method.masks=['centre']"], "'centre' is not a mask kind"),
    (["method.name=cvals", "method.masks=['center']"], "mask 'center' needs image data"),
    (["method.name=ccoopnets", "method.masks=[]"], "at least one mask kind"),
    (["method.name=cvals", "model.name=rbm"], "model.name = 'rbm' has no conditional"),
    (["method.name=ccoopnets", "generator.name=deconv"], "generator.name = 'deconv'"),
])
def test_bad_options_are_one_line_errors_and_nothing_is_written(tmp_path, sets, message):
    cfg = load_config(RunConfig, overrides=[*TOY, *sets])
    with pytest.raises(ConfigError) as e:
        start_run(cfg, tmp_path / "run")
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "run" / "summary.json").exists()


@pytest.mark.parametrize("sets, message", [
    (["method.name=ccoopnets", "method.n_chains=5"], "method.n_chains does not apply"),
    (["method.name=ccoopnets", "method.kl_weight=2"], "method.kl_weight does not apply"),
    (["method.name=cvals", "method.masks='center'"], "method.masks must be list"),
    (["method.name=ccoopnets", "encoder.width=8"], "[encoder] does not apply"),
    (["method.name=cvals", "method.data_noise=-1"], "method.data_noise must be >= 0"),
])
def test_bad_keys_are_one_line_config_errors(sets, message):
    with pytest.raises(ConfigError) as e:
        load_config(RunConfig, overrides=sets)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_cli_bad_mask_kind_exits_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--out", str(out)]
    for s in ["method.name=ccoopnets", "method.masks=['centre']", *TOY]:
        argv += ["--set", s]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "centre" in err
    assert not (out / "summary.json").exists()


@pytest.mark.parametrize("name", ["ccoopnets", "cvals"])
def test_train_inpaint_and_sample_end_to_end(tmp_path, capsys, name):
    out = tmp_path / "run"
    argv = ["train", "--out", str(out)]
    for s in [f"method.name={name}", "data.name=digits", "model.width=16", "model.depth=1",
              "generator.width=16", "generator.latent_dim=4", "encoder.width=16" if
              name == "cvals" else "train.seed=0", "method.n_steps=3", "train.iterations=4",
              "train.batch_size=20", "train.progress=false", "train.plot_every=0",
              "train.quality_samples=0", "train.longrun_factor=1"]:
        argv += ["--set", s]
    assert main(argv) == 0, capsys.readouterr().err
    images = np.random.default_rng(0).uniform(0, 1, (5, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", images)
    capsys.readouterr()
    assert main(["inpaint", "--run", str(out), "--images", str(tmp_path / "x.npy"), "--mask",
                 "center", "--steps", "3", "--score", "--out", str(tmp_path / "fill")]) == 0
    scores = json.loads((tmp_path / "fill" / "scores.json").read_text())
    assert np.isfinite(scores["psnr_missing"]) and np.isfinite(scores["ssim_missing"])
    filled = np.load(tmp_path / "fill" / "completed.npy")
    assert filled.shape == images.shape
    run = load_run(out)
    assert run.method.name == name
    mask = ip.named_mask("center", (1, 8, 8), 5)
    # the CLI's completions are the conditional model's: observed pixels kept exactly
    x = torch.from_numpy(images).reshape(5, 1, 8, 8)
    done = ip.complete_images(run.method, run.trainer.data, x, mask, n_steps=3, seed=0)
    assert torch.equal(done[~mask], x[~mask])
    capsys.readouterr()
    assert main(["sample", "--run", str(out), "--chains", "4"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    origin = "decoder samples" if name == "cvals" else "generator samples"
    assert printed["origin"] == f"3 langevin steps from {origin}"
    s = run.sample(3, seed=0)
    assert s.shape == (3, 1, 8, 8) and bool(torch.isfinite(s).all())
