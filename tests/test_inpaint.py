"""Image completion: masks by name, input files and layouts, PSNR / SSIM against independent
computations, the mean-image and k-nearest-neighbour baselines, ``Method.complete`` on an
exact Gaussian conditional, and ``ebmlab inpaint`` end to end on a tiny digits run with
each bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ebmlab import inpaint as ip
from ebmlab.chains import NoiseInit
from ebmlab.cli import main
from ebmlab.data import load_digits
from ebmlab.energies import Gaussian
from ebmlab.methods.mle import MaximumLikelihood
from ebmlab.samplers import MALA

Z = 4.5


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- masks by name -----------------------------------------------------------------------------


def test_center_and_bottom_half_masks():
    c = ip.named_mask("center", (1, 8, 8), 3)
    assert c.shape == (3, 1, 8, 8) and c.dtype == torch.bool
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[2:6, 2:6] = True
    assert all(torch.equal(m[0], expected) for m in c)
    c28 = ip.named_mask("center", (1, 28, 28), 1)[0, 0]
    assert int(c28.sum()) == 14 * 14 and bool(c28[7, 7]) and not bool(c28[6, 7])
    assert bool(c28[20, 20]) and not bool(c28[21, 20])
    b = ip.named_mask("bottom_half", (3, 5, 4), 2)
    assert b.shape == (2, 3, 5, 4)
    assert not b[:, :, :3].any() and b[:, :, 3:].all()  # the lower ⌊5/2⌋ = 2 rows


def test_random_mask_hides_exactly_a_fraction_per_image_seeded_channels_alike():
    m = ip.named_mask("random:0.5", (3, 8, 8), 20, seed=1)
    assert m.shape == (20, 3, 8, 8)
    assert (m.reshape(20, 3, -1).sum(2) == 32).all()  # exactly half of the 64 pixels
    assert torch.equal(m[:, 0], m[:, 1]) and torch.equal(m[:, 0], m[:, 2])
    assert len({tuple(x.flatten().tolist()) for x in m[:, 0]}) == 20  # a mask per image
    assert torch.equal(m, ip.named_mask("random:0.5", (3, 8, 8), 20, seed=1))
    assert not torch.equal(m, ip.named_mask("random:0.5", (3, 8, 8), 20, seed=2))
    # Every pixel is hidden about half the time over many images (uniform choice).
    many = ip.named_mask("random:0.25", (1, 8, 8), 4000, seed=3).float().mean(0).flatten()
    se = math.sqrt(0.25 * 0.75 / 4000)
    assert ((many - 0.25).abs() / se).max() < Z
    flat = ip.named_mask("random:0.1", (30,), 4, image=False)
    assert flat.shape == (4, 30) and (flat.sum(1) == 3).all()
    assert ip.named_mask("random:0.001", (1, 8, 8), 2).reshape(2, -1).sum(1).tolist() == [1, 1]


@pytest.mark.parametrize("spec, shape, image, message", [
    ("random:0", (1, 8, 8), True, "0 < P <= 1"),
    ("random:1.5", (1, 8, 8), True, "0 < P <= 1"),
    ("random:half", (1, 8, 8), True, "0 < P <= 1"),
    ("middle", (1, 8, 8), True, "masks by name are center, bottom_half, random:P"),
    ("center", (5,), False, "needs image data"),
    ("bottom_half", (1, 1, 1), True, "hides no pixel"),
])
def test_bad_mask_names(spec, shape, image, message):
    with pytest.raises(ValueError, match=message):
        ip.named_mask(spec, shape, 2, image=image)


# -- files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", [(5, 8, 8), (5, 1, 8, 8), (5, 64)])
def test_images_in_each_layout_read_to_the_run_shape(tmp_path, layout):
    a = np.arange(5 * 64, dtype=np.float32).reshape(layout) / 320
    np.save(tmp_path / "x.npy", a)
    raw, x = ip.read_images(tmp_path / "x.npy", (1, 8, 8))
    assert raw.shape == layout and x.shape == (5, 1, 8, 8) and x.dtype == np.float64
    assert np.array_equal(x.reshape(-1), a.reshape(-1).astype(np.float64))
    np.save(tmp_path / "m.npy", np.ones(layout[1:], dtype=np.uint8))
    assert ip.read_mask(tmp_path / "m.npy", raw, (1, 8, 8)).shape == (5, 1, 8, 8)


@pytest.mark.parametrize("write, message", [
    (lambda p: np.save(p, np.zeros((3, 9, 9))), r"do not fit the run's data shape \(1, 8, 8\)"),
    (lambda p: np.save(p, np.zeros((0, 8, 8))), "do not fit"),
    (lambda p: np.save(p, np.zeros(64)), "do not fit"),
    (lambda p: np.save(p, np.full((2, 64), np.nan)), "image 0 has NaN or infinite values"),
    (lambda p: np.save(p, np.array([["a"] * 64])), "expected numeric data"),
    (lambda p: p.write_bytes(b"not numpy"), "corrupt or unreadable .npy file"),
])
def test_bad_image_files(tmp_path, write, message):
    p = tmp_path / "x.npy"
    write(p)
    with pytest.raises(ValueError, match=message):
        ip.read_images(p, (1, 8, 8))
    with pytest.raises(ValueError, match="file not found"):
        ip.read_images(tmp_path / "missing.npy", (1, 8, 8))


def test_bad_mask_files(tmp_path):
    raw = np.zeros((4, 8, 8), dtype=np.float32)
    p = tmp_path / "m.npy"
    np.save(p, np.ones((3, 8, 8)))
    with pytest.raises(ValueError, match=r"matches neither one image \(8, 8\) nor the images"):
        ip.read_mask(p, raw, (1, 8, 8))
    np.save(p, np.full((8, 8), 0.5))
    with pytest.raises(ValueError, match="values must be 0 .observed. or 1 .missing."):
        ip.read_mask(p, raw, (1, 8, 8))
    with pytest.raises(ValueError, match="the mask has no missing pixel"):
        ip.check_masks(np.zeros((4, 1, 8, 8), dtype=bool))
    some = np.ones((4, 1, 8, 8), dtype=bool)
    some[2] = False
    with pytest.raises(ValueError, match="the mask of image 2 has no missing pixel"):
        ip.check_masks(some)


# -- scores -------------------------------------------------------------------------------------


def grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(h), np.arange(w), indexing="ij")


def test_ssim_matches_scikit_image_on_the_interior():
    """Reference values from scikit-image 0.26 ``structural_similarity(pred, truth,
    data_range=R, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`` (11×11
    window, interior mean), computed once in a separate environment on these formula-made
    images (scikit-image is not a dependency)."""
    i, j = grid(28, 28)
    truth = 0.5 + 0.4 * np.sin(i / 3.0) * np.cos(j / 4.0)
    pred = truth + 0.15 * np.sin(0.7 * i * j / 5 + 1.0)
    pred2 = np.clip(truth + 0.3 * np.cos(i * 0.9 + j * 0.4), 0, 1)
    t = lambda a: torch.from_numpy(a)[None, None]  # noqa: E731
    s = ip.ssim_map(t(pred), t(truth), 1.0)[0, 0]
    assert float(s[5:-5, 5:-5].mean()) == pytest.approx(0.6763027303972743, abs=1e-12)
    assert float(s[10, 12]) == pytest.approx(0.8245630909114846, abs=1e-12)
    s2 = ip.ssim_map(t(pred2), t(truth), 2.0)[0, 0]
    assert float(s2[5:-5, 5:-5].mean()) == pytest.approx(0.35879172382690677, abs=1e-12)


def ssim_by_loops(x: np.ndarray, y: np.ndarray, r: int, data_range: float) -> np.ndarray:
    """Wang et al. 2004, Eq. 13, pixel by pixel: Gaussian weights (σ = 1.5) over the window,
    reflect padding without repeating the edge (index −1 → 1, H → H − 2)."""
    h, w = x.shape
    t = np.arange(-r, r + 1)
    g = np.exp(-t**2 / (2 * 1.5**2))
    wts = np.outer(g, g) / np.outer(g, g).sum()

    def refl(k: int, n: int) -> int:
        return -k if k < 0 else (2 * (n - 1) - k if k >= n else k)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    out = np.empty((h, w))
    for a in range(h):
        for b in range(w):
            rows = [refl(a + d, h) for d in t]
            cols = [refl(b + d, w) for d in t]
            px, py = x[np.ix_(rows, cols)], y[np.ix_(rows, cols)]
            mx, my = (wts * px).sum(), (wts * py).sum()
            vx, vy = (wts * (px - mx) ** 2).sum(), (wts * (py - my) ** 2).sum()
            cxy = (wts * (px - mx) * (py - my)).sum()
            out[a, b] = ((2 * mx * my + c1) * (2 * cxy + c2)
                         / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return out


def test_ssim_map_everywhere_and_masked_means_match_a_direct_loop():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (2, 2, 8, 9))
    y = np.clip(x + rng.normal(0, 0.2, x.shape), 0, 1)
    got = ip.ssim_map(torch.from_numpy(x), torch.from_numpy(y), 1.0).numpy()
    assert ip.ssim_radius(8, 9) == 3
    for n in range(2):
        for c in range(2):
            assert np.allclose(got[n, c], ssim_by_loops(x[n, c], y[n, c], 3, 1.0), atol=1e-12)
    mask = torch.from_numpy(rng.uniform(size=(2, 1, 8, 9)) < 0.4)
    per = ip.ssim(torch.from_numpy(x), torch.from_numpy(y), 1.0, mask)
    for n in range(2):
        sel = np.broadcast_to(mask[n].numpy(), (2, 8, 9))
        assert float(per[n]) == pytest.approx(got[n][sel].mean(), abs=1e-12)
    same = torch.from_numpy(x)
    assert torch.allclose(ip.ssim(same, same, 1.0), torch.ones(2, dtype=torch.float64))


def test_psnr_on_missing_pixels_and_whole_images():
    truth = torch.zeros(2, 1, 4, 4, dtype=torch.float64)
    mask = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    mask[0, 0, :2] = True  # 8 of 16 pixels
    mask[1, 0, 0, 0] = True  # 1 of 16
    pred = torch.where(mask, truth + 0.1, truth)
    assert torch.allclose(ip.psnr(pred, truth, 1.0, mask), torch.tensor([20.0, 20.0],
                                                                           dtype=torch.float64))
    whole = ip.psnr(pred, truth, 1.0)
    assert float(whole[0]) == pytest.approx(10 * math.log10(1 / (0.01 * 8 / 16)))
    assert float(whole[1]) == pytest.approx(10 * math.log10(1 / (0.01 / 16)))
    assert float(ip.psnr(pred, truth, 2.0, mask)[0]) == pytest.approx(20 + 20 * math.log10(2))
    s = ip.score(pred, truth, mask, 1.0)
    assert s["psnr_missing"] == pytest.approx(20.0) and set(s) == {
        "psnr_missing", "psnr_whole", "ssim_missing", "ssim_whole"}
    assert set(ip.score(pred.reshape(2, 16), truth.reshape(2, 16), mask.reshape(2, 16), 1.0)
               ) == {"psnr_missing", "psnr_whole"}


# -- baselines ----------------------------------------------------------------------------------


def test_mean_fill_and_knn_fill_against_brute_force():
    rng = np.random.default_rng(1)
    train = torch.from_numpy(rng.uniform(size=(50, 1, 4, 4)))
    x = torch.from_numpy(rng.uniform(size=(7, 1, 4, 4)))
    mask = torch.from_numpy(rng.uniform(size=(7, 1, 4, 4)) < 0.5)
    mf = ip.mean_fill(train, x, mask)
    assert torch.equal(mf[~mask], x[~mask])
    assert torch.allclose(mf[mask], train.mean(0).expand_as(x)[mask])
    for k in (1, 5):
        got = ip.knn_fill(train, x, mask, k, batch_size=3)
        assert torch.equal(got[~mask], x[~mask])
        for n in range(7):
            vis = ~mask[n]
            d2 = torch.stack([((x[n] - t)[vis] ** 2).sum() for t in train])
            nearest = torch.argsort(d2)[:k]
            expect = train[nearest].mean(0)
            assert torch.allclose(got[n][mask[n]], expect[mask[n]])
    # An image of the training set is recovered exactly by 1-NN from its visible pixels.
    again = ip.knn_fill(train, train[:3], mask[:3], 1)
    assert torch.allclose(again, train[:3])
    with pytest.raises(ValueError, match="k must be in 1..50"):
        ip.knn_fill(train, x, mask, 51)


# -- Method.complete --------------------------------------------------------------------------


def test_method_complete_samples_the_exact_conditional_of_a_gaussian_energy():
    q, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64, generator=gen(0)))
    cov = q @ torch.diag(torch.tensor([0.5, 0.8, 1.2, 2.0], dtype=torch.float64)) @ q.T
    target = Gaussian([0.0, 1.0, -1.0, 0.5], (cov + cov.T) / 2)
    noise = NoiseInit((4,), kind="gaussian", scale=2.0, dtype=torch.float64)
    method = MaximumLikelihood(target, MALA(0.3), noise, regime="short_run", n_steps=200)
    n = 4000
    x = torch.tensor([2.0, 0.0, 0.0, -1.0], dtype=torch.float64).expand(n, 4)
    mask = torch.tensor([0, 1, 1, 0])
    out = method.complete(x, mask, rng=gen(1))
    assert torch.equal(out[:, [0, 3]], x[:, [0, 3]])
    m, o = [1, 2], [0, 3]
    gain = cov[m][:, o] @ torch.linalg.inv(cov[o][:, o])
    mean = target.mean[m] + gain @ (x[0, o] - target.mean[o])
    c = cov[m][:, m] - gain @ cov[o][:, m]
    z = out[:, m] - mean
    se = lambda v: v.std(0) / math.sqrt(n)  # noqa: E731
    assert ((z.mean(0) / se(z)).abs() < Z).all()
    prods = torch.stack([z[:, 0] ** 2, z[:, 1] ** 2, z[:, 0] * z[:, 1]], 1)
    truth = torch.stack([c[0, 0], c[1, 1], c[0, 1]])
    assert (((prods.mean(0) - truth) / se(prods)).abs() < Z).all()


def test_completion_start_is_where_the_missing_pixels_start():
    class Started(MaximumLikelihood):
        def completion_start(self, x, mask, rng):
            return torch.full_like(x, 7.0)

    noise = NoiseInit((3,), dtype=torch.float64)
    method = Started(Gaussian([0.0, 0.0, 0.0]), MALA(0.1), noise, regime="short_run", n_steps=5)
    x = torch.zeros(2, 3, dtype=torch.float64)
    out = method.complete(x, torch.tensor([1, 0, 1]), n_steps=0)
    assert out.tolist() == [[7.0, 0.0, 7.0]] * 2
    plain = MaximumLikelihood(Gaussian([0.0, 0.0, 0.0]), MALA(0.1), noise, regime="short_run",
                              n_steps=5)
    start = plain.complete(x, torch.tensor([1, 0, 1]), n_steps=0, rng=gen(3))
    expect = noise.sample(2, generator=gen(3))  # the target's chain start: fresh noise
    assert torch.equal(start[:, [0, 2]], expect[:, [0, 2]]) and (start[:, 1] == 0).all()


# -- ebmlab inpaint end to end --------------------------------------------------------------------


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


TINY = ["data.name=digits", "model.width=16", "model.depth=2", "method.n_steps=5",
        "train.batch_size=32", "train.progress=false", "train.plot_every=0",
        "train.longrun_factor=1", "train.iterations=10", "train.ckpt_every=10"]


def train_tiny(path, capsys, method: str) -> None:
    argv = ["train", "--out", str(path)]
    for s in [*TINY, f"method.name={method}"]:
        argv += ["--set", s]
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "persistent"
    argv = ["train", "--out", str(path)]
    for s in [*TINY, "method.name=persistent"]:
        argv += ["--set", s]
    assert main(argv) == 0
    return path


@pytest.fixture()
def test_images(tmp_path):
    x = load_digits("test").images[:6, 0].numpy()  # (6, 8, 8) in [0, 1]
    np.save(tmp_path / "x.npy", x)
    return tmp_path / "x.npy", x


def test_inpaint_end_to_end_writes_completion_png_scores_and_summary(digits_run, test_images,
                                                                      tmp_path, capsys):
    xpath, x = test_images
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "inpaint", "--run", str(digits_run), "--images",
                                str(xpath), "--mask", "center", "--out", str(out), "--score",
                                "--samples", "2", "--steps", "7")
    assert code == 0, err
    summary = json.loads(stdout.strip().splitlines()[-1])
    completed = np.load(out / "completed.npy")
    assert completed.shape == x.shape and completed.dtype == x.dtype
    mask = ip.named_mask("center", (1, 8, 8), 6)[:, 0].numpy()
    assert np.array_equal(completed[~mask], x[~mask])  # observed pixels bit-identical
    assert np.isfinite(completed).all() and not np.array_equal(completed[mask], x[mask])
    assert (out / "completed.png").stat().st_size > 1000
    scores = json.loads((out / "scores.json").read_text())
    assert set(scores) == {"data_range", "psnr_missing", "psnr_whole", "ssim_missing",
                           "ssim_whole"}
    assert scores["data_range"] == 1.0 and scores["psnr_whole"] > scores["psnr_missing"]
    truth = torch.from_numpy(x[:, None].astype(np.float64))
    pred = torch.from_numpy(completed[:, None].astype(np.float64))
    recomputed = ip.score(pred, truth, torch.from_numpy(mask[:, None]), 1.0)
    assert scores["psnr_missing"] == pytest.approx(recomputed["psnr_missing"], abs=1e-9)
    saved = json.loads((out / "summary.json").read_text())
    assert saved["n_images"] == 6 and saved["steps"] == 7 and saved["samples"] == 2
    assert saved["missing_fraction"] == 0.25 and summary["out"] == str(out)
    # the same seed gives the same completion
    code, _, _ = run_cli(capsys, "inpaint", "--run", str(digits_run), "--images", str(xpath),
                         "--mask", "center", "--out", str(tmp_path / "again"), "--samples", "2",
                         "--steps", "7")
    assert code == 0 and np.array_equal(np.load(tmp_path / "again" / "completed.npy"), completed)


@pytest.mark.parametrize("mask", ["bottom_half", "random:0.5", "file-one", "file-each"])
def test_inpaint_masks_and_flat_layout(digits_run, tmp_path, capsys, mask):
    x = load_digits("test").images[:4].reshape(4, 64).numpy().astype(np.float64)
    np.save(tmp_path / "x.npy", x)
    if mask.startswith("file"):
        rng = np.random.default_rng(0)
        m = rng.uniform(size=(64,) if mask == "file-one" else (4, 64)) < 0.3
        m[..., 0] = True
        np.save(tmp_path / "m.npy", m.astype(np.int64))
        mask_arg, hidden = str(tmp_path / "m.npy"), np.broadcast_to(m, x.shape)
    else:
        mask_arg = mask
        hidden = ip.named_mask(mask, (1, 8, 8), 4, seed=3).reshape(4, 64).numpy()
    out = tmp_path / "o"
    code, _, err = run_cli(capsys, "inpaint", "--run", str(digits_run), "--images",
                           str(tmp_path / "x.npy"), "--mask", mask_arg, "--out", str(out),
                           "--seed", "3")
    assert code == 0, err
    c = np.load(out / "completed.npy")
    assert c.shape == (4, 64) and c.dtype == np.float64
    assert np.array_equal(c[~hidden], x[~hidden]) and not np.array_equal(c[hidden], x[hidden])


@pytest.mark.parametrize("method", ["short_run", "cd"])
def test_every_ml_trained_energy_completes(tmp_path, capsys, test_images, method):
    train_tiny(tmp_path / "run", capsys, method)
    xpath, x = test_images
    code, stdout, err = run_cli(capsys, "inpaint", "--run", str(tmp_path / "run"), "--images",
                                str(xpath), "--mask", "random:0.5", "--out", str(tmp_path / "o"))
    assert code == 0, err
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["sampler"] == ("mala" if method == "cd" else "langevin")
    assert summary["steps"] == 5
    assert np.isfinite(np.load(tmp_path / "o" / "completed.npy")).all()


def bad_inputs(tmp_path):
    x = load_digits("test").images[:3, 0].numpy()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "nan.npy", np.where(np.arange(64).reshape(8, 8) == 5, np.nan, x))
    np.save(tmp_path / "big.npy", np.zeros((3, 9, 9)))
    np.save(tmp_path / "m_wrong.npy", np.ones((4, 8, 8)))
    np.save(tmp_path / "m_empty.npy", np.zeros((8, 8)))
    return {
        "mask shape": (["--mask", "m_wrong.npy"], "matches neither one image"),
        "no missing pixel": (["--mask", "m_empty.npy"], "the mask has no missing pixel"),
        "not the run's shape": (["--images", "big.npy"], "do not fit the run's data shape"),
        "missing images": (["--images", "nope.npy"], "file not found"),
        "missing mask": (["--mask", "nope.npy"], "file not found (masks by name"),
        "nan": (["--images", "nan.npy"], "image 0 has NaN or infinite values"),
        "bad name": (["--mask", "random:2"], "0 < P <= 1"),
        "samples": (["--samples", "0"], "--samples must be >= 1"),
        "steps": (["--steps", "-1"], "--steps must be >= 0"),
        "not a run": (["--run", "x.npy"], "is not a run directory"),
    }


@pytest.mark.parametrize("case", [
    "mask shape", "no missing pixel", "not the run's shape", "missing images", "missing mask",
    "nan", "bad name", "samples", "steps", "not a run"])
def test_bad_input_is_one_line_exit_2_nothing_written(digits_run, tmp_path, capsys, monkeypatch,
                                                     case):
    monkeypatch.chdir(tmp_path)
    change, message = bad_inputs(tmp_path)[case]
    args = {"--run": str(digits_run), "--images": "x.npy", "--mask": "center", "--out": "out"}
    extra = []
    for flag, value in zip(change[::2], change[1::2], strict=True):
        if flag in args:
            args[flag] = value
        else:
            extra += [flag, value]
    argv = ["inpaint", *[t for kv in args.items() for t in kv], *extra]
    before = sorted(p.name for p in digits_run.iterdir())
    code, stdout, err = run_cli(capsys, *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert stdout == "" and not (tmp_path / "out").exists()
    assert sorted(p.name for p in digits_run.iterdir()) == before


def test_an_existing_output_folder_is_never_overwritten(digits_run, test_images, tmp_path,
                                                        capsys):
    xpath, _ = test_images
    out = tmp_path / "keep"
    out.mkdir()
    (out / "completed.npy").write_bytes(b"precious")
    code, _, err = run_cli(capsys, "inpaint", "--run", str(digits_run), "--images", str(xpath),
                           "--mask", "center", "--out", str(out))
    assert code == 2 and "refusing to overwrite" in err
    assert (out / "completed.npy").read_bytes() == b"precious"
    assert sorted(p.name for p in out.iterdir()) == ["completed.npy"]


def test_bench_script_reports_completion_and_baselines(digits_run, tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "inpaint.py"
    spec = importlib.util.spec_from_file_location("bench_inpaint", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = tmp_path / "r.md"
    headline = bench.main(["--run", str(digits_run), "--steps", "3", "--samples", "1",
                           "--masks", "center,random:0.5", "--limit", "5", "--out", str(report)])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == headline
    assert set(headline) == {f"{m}/{n}" for m in ("center", "random:0.5")
                             for n in ("mean image", "1-NN", "5-NN", "persistent, 3 steps × 1")}
    assert "| center | 5-NN |" in report.read_text()
