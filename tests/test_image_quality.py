"""FID / KID / PSNR / SSIM against closed forms and direct implementations, the feature
classifier (determinism, accuracy, cache), baselines, and FID / KID of image runs
(checkpoints, summary, ``ebmlab eval --run``)."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from ebmlab.cli import main
from ebmlab.data import load_digits
from ebmlab.energies import ConvEnergy
from ebmlab.evaluate.image_baselines import gaussian_mixture_samples, training_images
from ebmlab.evaluate.image_quality import (
    ClassifierSettings,
    build_feature_space,
    clear_memory,
    feature_space,
    fid,
    frechet_distance,
    gaussian_fit,
    kid,
    mmd2_unbiased,
    score_images,
)

# -- FID -----------------------------------------------------------------------------------


def _spd(d: int, seed: int, rank: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, rank or d))
    return a @ a.T + (0.1 * np.eye(d) if rank is None else 0.0)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def test_frechet_distance_matches_closed_form_with_scipy_sqrtm():
    d = 6
    mu1, mu2 = np.arange(d, dtype=float), np.linspace(-1, 2, d)
    s1, s2 = _spd(d, 1), _spd(d, 2)
    exact = (np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2)
             - 2 * np.real(np.trace(scipy.linalg.sqrtm(s1 @ s2))))
    got = frechet_distance(_t(mu1), _t(s1), _t(mu2), _t(s2))
    assert got == pytest.approx(exact, rel=1e-9)
    assert frechet_distance(_t(mu2), _t(s2), _t(mu1), _t(s1)) == pytest.approx(exact, rel=1e-9)


def test_frechet_distance_commuting_covariances():
    # Diagonal Σ's commute: FID = ‖μ₁ − μ₂‖² + Σᵢ (√aᵢ − √bᵢ)²
    a, b = np.array([1.0, 4.0, 9.0, 0.25]), np.array([4.0, 1.0, 9.0, 0.0])
    mu1, mu2 = np.array([0.0, 1.0, 0.0, 2.0]), np.array([1.0, 1.0, -1.0, 0.0])
    exact = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(_t(mu1), _t(np.diag(a)), _t(mu2), _t(np.diag(b)))
    assert got == pytest.approx(exact, abs=1e-12)


def test_fid_is_gaussian_fit_then_frechet_and_zero_on_itself():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 5, generator=g, dtype=torch.float64) @ _t(_spd(5, 3))
    y = torch.randn(300, 5, generator=g, dtype=torch.float64) + 1.0
    xn, yn = x.numpy(), y.numpy()
    expected = frechet_distance(_t(xn.mean(0)), _t(np.cov(xn, rowvar=False)),
                                _t(yn.mean(0)), _t(np.cov(yn, rowvar=False)))
    assert fid(x, y) == pytest.approx(expected, rel=1e-12)
    mu, cov = gaussian_fit(x)
    assert torch.allclose(cov, _t(np.cov(xn, rowvar=False)))
    scale = float(torch.trace(cov))
    assert abs(fid(x, x)) < 1e-10 * scale


def test_fid_of_a_shift_is_its_squared_norm_even_for_singular_covariances():
    # Features with dead units (zero columns) and rank-deficient covariance: equal
    # covariances, so FID = ‖c‖² exactly; tr(Σ₁Σ₂)^½ must not be thrown off by Σ's null space.
    g = torch.Generator().manual_seed(1)
    z = torch.randn(50, 3, generator=g, dtype=torch.float64)
    x = torch.cat([z @ torch.randn(3, 20, generator=g, dtype=torch.float64),
                   torch.zeros(50, 4, dtype=torch.float64)], 1)  # rank 3 of 24
    c = torch.linspace(-1, 1, 24, dtype=torch.float64)
    assert fid(x, x + c) == pytest.approx(float(c @ c), rel=1e-7)


def test_fid_rejects_bad_input():
    x = torch.randn(10, 3)
    with pytest.raises(ValueError, match="feature dimensions differ"):
        fid(x, torch.randn(10, 4))
    with pytest.raises(ValueError, match="NaN or infinite"):
        fid(x, torch.full((10, 3), float("nan")))
    with pytest.raises(ValueError, match="at least 2 rows"):
        fid(x[:1], x)


# -- KID -----------------------------------------------------------------------------------


def _mmd2_direct(a: np.ndarray, b: np.ndarray) -> float:
    """The unbiased MMD² with k(x, y) = (x·y/d + 1)³, by explicit double loops."""
    d = a.shape[1]

    def k(x: np.ndarray, y: np.ndarray) -> float:
        return (float(np.dot(x, y)) / d + 1.0) ** 3

    m, n = len(a), len(b)
    kaa = sum(k(a[i], a[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kbb = sum(k(b[i], b[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kab = sum(k(a[i], b[j]) for i in range(m) for j in range(n)) / (m * n)
    return kaa + kbb - 2 * kab


def test_kid_matches_a_direct_implementation():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(15, 4)), rng.normal(0.5, 1.2, size=(12, 4))
    direct = _mmd2_direct(a, b)
    assert mmd2_unbiased(_t(a), _t(b)) == pytest.approx(direct, rel=1e-12)
    assert mmd2_unbiased(_t(a), _t(a)) == pytest.approx(_mmd2_direct(a, a), rel=1e-12)


def test_kid_subsets_average_subset_estimates():
    rng = np.random.default_rng(1)
    a, b = _t(rng.normal(size=(60, 3))), _t(rng.normal(size=(40, 3)) + 0.3)
    mean, sd = kid(a, b, n_subsets=30, subset_size=20, seed=4)
    gen = torch.Generator().manual_seed(4)  # kid's subset draws, replayed
    values = [mmd2_unbiased(a[torch.randperm(60, generator=gen)[:20]],
                            b[torch.randperm(40, generator=gen)[:20]]) for _ in range(30)]
    assert mean == pytest.approx(np.mean(values), rel=1e-12)
    assert sd == pytest.approx(np.std(values, ddof=1), rel=1e-12)
    # equal sizes within subset_size: half-size subsets, not 30 copies of one number
    mean, sd = kid(a[:40], b, n_subsets=30, subset_size=1000, seed=4)
    gen = torch.Generator().manual_seed(4)
    values = [mmd2_unbiased(a[:40][torch.randperm(40, generator=gen)[:20]],
                            b[torch.randperm(40, generator=gen)[:20]]) for _ in range(30)]
    assert mean == pytest.approx(np.mean(values), rel=1e-12) and sd > 0


def test_kid_is_unbiased_for_equal_laws_and_positive_for_different_ones():
    g = torch.Generator().manual_seed(2)
    same = [kid(torch.randn(30, 5, generator=g, dtype=torch.float64),
                torch.randn(30, 5, generator=g, dtype=torch.float64))[0] for _ in range(200)]
    m, s = float(np.mean(same)), float(np.std(same, ddof=1))
    assert abs(m) < 4.5 * s / math.sqrt(len(same))
    diff = [kid(torch.randn(30, 5, generator=g, dtype=torch.float64),
                torch.randn(30, 5, generator=g, dtype=torch.float64) * 1.5 + 0.5)[0]
            for _ in range(50)]
    assert np.mean(diff) > 4.5 * np.std(diff, ddof=1) / math.sqrt(len(diff))


# -- the classifier and its cache ---------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_space(tmp_path_factory):
    """The default digits classifier, trained once into a module-wide cache folder."""
    cache = tmp_path_factory.mktemp("cache")
    clear_memory()
    space = feature_space("digits", cache_dir=cache)
    yield space, cache
    clear_memory()


def test_digits_classifier_accuracy_and_floor(digits_space):
    space, cache = digits_space
    assert space.test_accuracy > 0.95
    assert space.cache_path is not None and space.cache_path.parent == cache / "classifiers"
    test, train = load_digits("test").images, load_digits("train").images
    floor = score_images(space, training_images(train, 1000, seed=0), test)
    noise = score_images(space, torch.rand(1000, 1, 8, 8), test)
    assert floor["n_samples"] == 1000 and floor["n_reference"] == 297
    # real images are far closer to the test split than noise, in FID and KID alike
    assert floor["fid"] < 0.1 * noise["fid"]
    assert noise["kid"] - floor["kid"] > 4.5 * math.hypot(noise["kid_sd"], floor["kid_sd"])


def _tiny(n: int = 60, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    d = load_digits("train", limit=n)
    return d.images, d.labels


SMALL = ClassifierSettings(steps=30, channels=4, feature_dim=8)


def test_classifier_is_deterministic_and_leaves_the_global_rng_alone():
    x, y = _tiny()
    state = torch.get_rng_state()
    a = build_feature_space("t", x, y, settings=SMALL, use_cache=False)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(123)  # the global stream must not matter
    b = build_feature_space("t", x, y, settings=SMALL, use_cache=False)
    assert torch.equal(a.features(x), b.features(x))
    c = build_feature_space("t", x, y, settings=ClassifierSettings(steps=30, channels=4,
                                                                   feature_dim=8, seed=1),
                            use_cache=False)
    assert not torch.equal(a.features(x), c.features(x))


def test_cache_reuses_retrains_when_corrupt_and_keys_on_data_and_settings(tmp_path):
    x, y = _tiny()
    clear_memory()
    a = build_feature_space("t", x, y, settings=SMALL, cache_dir=tmp_path)
    path = a.cache_path
    assert path is not None and path.exists() and a.seconds > 0
    clear_memory()
    b = build_feature_space("t", x, y, settings=SMALL, cache_dir=tmp_path)
    assert b.seconds == 0.0 and b.cache_path == path  # loaded, not trained
    assert torch.equal(a.features(x), b.features(x)) and b.scale == a.scale
    # other data or other settings: another network, another file
    other = build_feature_space("t", x[:50], y[:50], settings=SMALL, cache_dir=tmp_path)
    assert other.cache_path != path
    more = build_feature_space("t", x, y, settings=ClassifierSettings(steps=31, channels=4,
                                                                      feature_dim=8),
                               cache_dir=tmp_path)
    assert more.cache_path not in (path, other.cache_path)
    # a corrupt file is retrained with a warning and rewritten
    for junk in (b"not a safetensors file", path.read_bytes()[:100]):
        path.write_bytes(junk)
        clear_memory()
        with pytest.warns(RuntimeWarning, match="unreadable.*retraining"):
            c = build_feature_space("t", x, y, settings=SMALL, cache_dir=tmp_path)
        assert c.seconds > 0 and torch.equal(c.features(x), a.features(x))
    clear_memory()
    assert build_feature_space("t", x, y, settings=SMALL, cache_dir=tmp_path).seconds == 0.0
    clear_memory()


def test_unwritable_cache_warns_and_keeps_the_network(tmp_path):
    x, y = _tiny()
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    clear_memory()
    with pytest.warns(RuntimeWarning, match="cannot write the feature classifier cache"):
        space = build_feature_space("t", x, y, settings=SMALL, cache_dir=blocker)
    assert space.cache_path is None and space.features(x).shape == (60, 8)
    clear_memory()


def test_env_variable_sets_the_cache_folder(tmp_path, monkeypatch):
    from ebmlab.evaluate.image_quality import default_cache_dir

    monkeypatch.setenv("EBMLAB_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    x, y = _tiny()
    clear_memory()
    space = build_feature_space("t", x, y, settings=SMALL)
    assert space.cache_path is not None and space.cache_path.parent == tmp_path / "c" / \
        "classifiers"
    clear_memory()


def test_features_reject_wrong_shapes_and_nan_and_clamp(digits_space):
    space, _ = digits_space
    x = load_digits("test", limit=5).images
    assert torch.equal(space.features(x), space.features(x.reshape(5, 64)))
    assert torch.equal(space.features(x + 5.0), space.features(torch.ones_like(x)))  # clamped
    with pytest.raises(ValueError, match=r"shape \(N, 1, 8, 8\)"):
        space.features(torch.rand(5, 1, 7, 7))
    with pytest.raises(ValueError, match="1 of 5 images contain NaN"):
        space.features(torch.cat([x[:4], torch.full((1, 1, 8, 8), float("nan"))]))


# -- 28×28 IDX files ------------------------------------------------------------------------------


def _idx(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    header = (0x800 | arr.ndim).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big")
                                                             for d in arr.shape)
    return header + arr.tobytes()


def _mnist_like(root: Path) -> None:
    """Digits upsampled to 28×28 (3× nearest + 2 pixels of border) as gzipped IDX files."""
    for split, prefix in (("train", "train"), ("test", "t10k")):
        d = load_digits(split, limit=300 if split == "train" else 100)
        big = d.images[:, 0].repeat_interleave(3, 1).repeat_interleave(3, 2)  # 24×24
        big = torch.nn.functional.pad(big, (2, 2, 2, 2))
        (root / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(_idx((big * 255).round().numpy())))
        (root / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(_idx(d.labels.numpy())))


def test_28x28_idx_files_feature_space_and_conv_energy(tmp_path):
    _mnist_like(tmp_path)
    clear_memory()
    space = feature_space("mnist", tmp_path, settings=ClassifierSettings(steps=300),
                          cache_dir=tmp_path / "cache")
    assert space.image_shape == (1, 28, 28) and space.test_accuracy > 0.4  # 4× chance
    assert space.features(torch.rand(3, 1, 28, 28)).shape == (3, 64)
    clear_memory()
    energy = ConvEnergy(1, channels=8, n_blocks=3)
    assert energy(torch.rand(4, 1, 28, 28)).shape == (4,)
    assert ConvEnergy(1, channels=8, n_blocks=3)(torch.rand(4, 1, 8, 8)).shape == (4,)


# -- baselines ----------------------------------------------------------------------------------


def test_baselines_shapes_and_seeds():
    train = load_digits("train").images
    t = training_images(train, 10, seed=3)
    assert t.shape == (10, 1, 8, 8) and torch.equal(t, training_images(train, 10, seed=3))
    g = gaussian_mixture_samples(train[:300], 50, n_components=3, seed=0)
    assert g.shape == (50, 1, 8, 8) and torch.isfinite(g).all()
    assert torch.equal(g, gaussian_mixture_samples(train[:300], 50, n_components=3, seed=0))
    # sample means follow the data (50 samples: loose, 4.5 standard errors)
    se = train[:300].std() / math.sqrt(50)
    assert abs(float(g.mean() - train[:300].mean())) < 4.5 * float(se)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        training_images(train, 0)


# -- image runs: checkpoints, summary, eval --run ------------------------------------------

RUN = ["data.name=digits", "model.name=conv", "model.width=8", "model.depth=2",
       "method.name=short_run", "method.n_steps=5", "train.batch_size=32",
       "train.iterations=6", "train.ckpt_every=3", "train.progress=false",
       "train.plot_every=0", "train.longrun_factor=2", "train.quality_samples=40"]


def _sets(items):
    return [a for s in items for a in ("--set", s)]


def test_image_run_logs_fid_at_checkpoints_and_eval_reports_it(tmp_path, capsys, monkeypatch,
                                                                digits_space):
    _, cache = digits_space
    monkeypatch.setenv("EBMLAB_CACHE_DIR", str(cache))
    out = tmp_path / "run"
    assert main(["train", *_sets(RUN), "--out", str(out)]) == 0
    stdout, err = capsys.readouterr()
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["quality_samples"] == 40 and summary["quality_reference"] == 297
    assert summary["fid"] > 0 and "kid" in summary and summary["classifier_test_accuracy"] > 0.95
    assert summary["quality_origin"] == "5 langevin steps from noise"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    quality = [r for r in records if "fid" in r]
    assert [r["iteration"] for r in quality] == [3, 6]
    assert all(r["quality_samples"] == 40 and r["quality_seconds"] >= 0 for r in quality)
    assert quality[-1]["fid"] == pytest.approx(summary["fid"])
    longrun = json.loads((out / "longrun.jsonl").read_text().splitlines()[-1])
    for origin in ("data", "model"):
        assert longrun[origin]["fid"] >= 0 and "kid" in longrun[origin]
        assert (out / f"longrun_{origin}.png").exists()
    assert longrun["n"] == 297
    # long-run chains from held-out data stay closer to the test images than noise-started
    # chains of a 6-iteration model
    assert longrun["data"]["fid"] < longrun["model"]["fid"]
    assert (out / "quality.png").exists() and (out / "samples.png").exists()

    assert main(["eval", "--run", str(out)]) == 0
    ev = json.loads(capsys.readouterr()[0].strip().splitlines()[-1])
    assert ev["fid"] == pytest.approx(summary["fid"], rel=1e-6)  # same seed, same samples
    assert ev["quality_samples"] == 40 and ev["quality_reference"] == 297
    assert main(["eval", "--run", str(out), "--quality-samples", "60"]) == 0
    ev = json.loads(capsys.readouterr()[0].strip().splitlines()[-1])
    assert ev["quality_samples"] == 60 and ev["fid"] > 0
    assert main(["eval", "--run", str(out), "--quality-samples", "0"]) == 0
    assert "fid" not in json.loads(capsys.readouterr()[0].strip().splitlines()[-1])
    assert main(["eval", "--run", str(out), "--quality-samples", "-1"]) == 2
    assert "--quality-samples must be >= 0" in capsys.readouterr()[1]


def test_quality_can_be_switched_off(tmp_path, capsys, monkeypatch, digits_space):
    _, cache = digits_space
    monkeypatch.setenv("EBMLAB_CACHE_DIR", str(cache))
    out = tmp_path / "run"
    args = _sets([*RUN, "train.quality_checkpoints=false"])
    assert main(["train", *args, "--out", str(out)]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if "fid" in r] == [6]  # the end only
    capsys.readouterr()
    out2 = tmp_path / "off"
    assert main(["train", *_sets([*RUN, "train.quality_samples=0"]), "--out", str(out2)]) == 0
    summary = json.loads(capsys.readouterr()[0].strip().splitlines()[-1])
    assert "fid" not in summary
    assert not any("fid" in line for line in (out2 / "metrics.jsonl").read_text().splitlines())
