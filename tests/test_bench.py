"""The benchmark scripts run end to end at toy size (their numbers live in the README)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from ebmlab.energies import GaussianBernoulliRBM

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_stein_rbm_learns_and_its_numbers_agree_with_closed_forms(tmp_path, capsys):
    """The report's JSON line repeats the runs' final exact test LLs; the initial RBM
    (B ≈ 0, b = c = 0) scores the closed-form N(0, I) likelihood; every method's test LL
    rises; the Gaussian baseline equals the exact LL of an RBM with B = 0, b = mean."""
    bench = _load("stein_rbm")
    keys = ["cd1", "steincd", "steingan"]
    argv = ["--iterations", "20", "--evals", "2", "--seeds", "0", "--methods", ",".join(keys),
            "--out", str(tmp_path)]
    bench.main(argv)
    finals = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(finals) == set(keys)
    assert (tmp_path / "curves.png").exists() and (tmp_path / "samples_steingan.png").exists()
    assert "gmm_10_full" in (tmp_path / "report.md").read_text()

    args = bench.parse_args(argv)
    data = bench.bench_data(args)
    z_test = data.test.flatten(1).double()
    d = z_test.shape[1]
    log_scale = math.log(float(data.scale.reshape(-1)[0]))
    normal_ll = float(-0.5 * z_test.square().sum(1).mean() - 0.5 * d * math.log(2 * math.pi)
                      - d * log_scale)
    contenders = {c.key: c for c in bench.CONTENDERS}
    for key in keys:
        res = bench.run_one(contenders[key], 0, args)
        lls = [ll for _, _, ll in res.curve]
        assert res.error is None and len(lls) == 3
        assert abs(lls[0] - normal_ll) < 0.1, (key, lls[0], normal_ll)
        assert lls[0] < lls[1] < lls[2] and lls[2] > lls[0] + 1.0, (key, lls)
        assert res.final == pytest.approx(finals[key], abs=1e-3), key

    rbm = GaussianBernoulliRBM(d, 4, init_scale=0.0, dtype=torch.float64)
    with torch.no_grad():
        rbm.b.copy_(data.train.flatten(1).double().mean(0))
    exact = rbm.mean_log_likelihood(z_test) - d * log_scale
    assert bench.baselines(data)["gaussian_shared_var"] == pytest.approx(exact, abs=1e-6)


def test_stein_rbm_rejects_unknown_methods():
    bench = _load("stein_rbm")
    with pytest.raises(SystemExit):
        bench.parse_args(["--methods", "cd1,nope"])


def test_learning_bench_scores_a_method_exactly(tmp_path, capsys):
    bench = _load("learning")
    out = tmp_path / "learning.md"
    bench.main(["--quick", "--budget", "0.5", "--datasets", "8gaussians", "--methods",
                "cd,steincd", "--no-peer", "--longrun-steps", "20", "--n-grid", "60",
                "--out", str(out)])
    text = out.read_text()
    assert "| 8gaussians | CD-5 (from data) |" in text
    assert "| 8gaussians | SteinCD (ε = 0.1) |" in text
    assert "failed" not in text


def test_gebm_bench_runs_every_part_at_toy_size(tmp_path, capsys):
    pytest.importorskip("zuko")
    bench = _load("gebm")
    out = tmp_path / "gebm.md"
    headline = bench.main(["--iterations", "30", "--tabular-iterations", "5",
                           "--grad-budgets", "10", "--mode-budget", "20",
                           "--density-data", "8gaussians", "--tabular", "wine",
                           "--out", str(out)])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(last) == {"lowdim", "modes_per_chain", "density", "minutes"}
    assert {"base", "ula@10", "imh@10", "x_space_ebm"} <= set(last["lowdim"])
    assert last["density"]["8gaussians/flow"] > 0 and "wine/gebm" in last["density"]
    text = out.read_text()
    assert "| held-out data (noise floor) |" in text and "## Claims" in text
    assert "failed" not in text
    assert headline["density"] == last["density"]


def test_images_bench_end_to_end_at_toy_size(tmp_path, capsys, monkeypatch):
    """bench/images.py: floor, a GaussianMixture and two EBM rows trained for 4 iterations;
    the JSON line repeats the report's numbers; real images beat a 4-iteration EBM."""
    monkeypatch.setenv("EBMLAB_CACHE_DIR", str(tmp_path / "cache"))
    bench = _load("images")
    bench.main(["--iterations", "4", "--only", "shortrun,anila", "--gmm", "2:diag",
                "--longrun-factor", "2", "--out", str(tmp_path / "res"),
                "--runs", str(tmp_path / "runs")])
    out = capsys.readouterr().out.strip().splitlines()
    scores = json.loads(out[-1])
    assert {"floor:short", "gmm_2_diag:short", "shortrun:short", "shortrun:long_noise",
            "shortrun:long_data", "anila:short"} <= set(scores)
    assert scores["floor:short"]["fid"] < scores["shortrun:short"]["fid"]
    text = (tmp_path / "res" / "images.md").read_text()
    assert f"| {scores['floor:short']['fid']:.3f} |" in text
    for name in ("shortrun_shortrun.png", "shortrun_longrun_noise.png", "gmm_2_diag.png"):
        assert (tmp_path / "res" / "images" / name).exists(), name
    # --reuse keeps runs whose config is unchanged: same numbers, nothing trained again
    stamp = (tmp_path / "runs" / "shortrun" / "summary.json").stat().st_mtime_ns
    bench.main(["--iterations", "4", "--only", "shortrun", "--gmm", "2:diag",
                "--longrun-factor", "2", "--out", str(tmp_path / "res"),
                "--runs", str(tmp_path / "runs"), "--reuse"])
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["shortrun:short"] == scores["shortrun:short"]
    assert (tmp_path / "runs" / "shortrun" / "summary.json").stat().st_mtime_ns == stamp
    assert "reused" in (tmp_path / "res" / "images.md").read_text()


def test_distributed_bench_reports_its_runs_and_the_control(tmp_path, capsys):
    """bench/distributed.py: 1 process, 2 processes and the no-communication control each
    train and report a positive throughput; the JSON line repeats the report's speed-ups."""
    bench = _load("distributed")
    out = tmp_path / "distributed.md"
    bench.main(["--iterations", "8", "--warmup", "2", "--reps", "1", "--batch", "16",
                "--width", "8", "--out", str(out)])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["examples_per_s_1"] > 0 and last["examples_per_s_2"] > 0
    assert last["speedup"] == pytest.approx(last["examples_per_s_2"] / last["examples_per_s_1"],
                                            rel=1e-2)
    text = out.read_text()
    control = next(line for line in text.splitlines()
                   if line.startswith("| control: 2 independent 1-process runs of batch 8, summed |"))
    # the report rounds to 2 decimals, the JSON line to 3: they agree to within that rounding
    assert float(control.rstrip(" |").rsplit("|", 1)[-1]) == pytest.approx(
        last["control_speedup"], abs=0.0051)


def test_training_speed_bench_runs_and_reports_every_contender(tmp_path, capsys):
    """bench/training_speed.py at toy size: every contender timed, the goals written."""
    bench = _load("training_speed")
    out = tmp_path / "training_speed.md"
    text = bench.main(["--quick", "--workloads", "mlp", "--reps", "1", "--iters", "1",
                       "--no-peer", "--out", str(out)])
    assert out.read_text().strip() == text.strip()
    for name in (bench.HAND, bench.EBMLAB, "ebmlab persistent, autograd"):
        row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
        assert "n/a" not in row
    assert "- mlp: ebmlab " in text and "goal ≤ 1.0" in text


def test_coop_bench_counts_gradients_and_its_report_agrees(tmp_path, capsys, monkeypatch):
    """bench/coop.py at toy size: the Langevin gradient evaluations are chains × steps ×
    iterations exactly; the JSON line repeats the report's numbers; completion scores come
    out for every mask; the reach ratio is read off the curve."""
    monkeypatch.setenv("EBMLAB_CACHE_DIR", str(tmp_path / "cache"))
    bench = _load("coop")
    out = tmp_path / "coop.md"
    result = bench.main(["--budget", "0.6", "--evals", "2", "--n-grid", "40", "--datasets",
                         "8gaussians", "--toy-methods", "persistent,vals_k5",
                         "--image-data", "digits", "--image-methods", "vals,shortrun",
                         "--image-iterations", "digits:3", "--longrun-factor", "1",
                         "--completion-limit", "12", "--jobs", "1", "--out", str(out),
                         "--runs", str(tmp_path / "runs")])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last == json.loads(json.dumps(result))
    text = out.read_text()
    toy = {k.split("/")[1]: v for k, v in last["toys"].items()}
    evals = {k.split("/")[1]: v for k, v in last["grad_evals"].items()}
    for key, steps in (("persistent", 20), ("vals_k5", 5)):
        assert math.isfinite(toy[key]) and toy[key] > 0
        row = next(line for line in text.splitlines() if line.startswith("| 8gaussians |")
                   and f"| {evals[key]} |" in line)
        iterations = int(row.split("|")[3])
        assert evals[key] == iterations * 200 * steps  # batch 200 chains × K steps
        assert float(row.split("|")[5]) == pytest.approx(toy[key], abs=1.5e-3)
    for key, label in (("vals", "VALS"), ("shortrun", "short-run ML from noise")):
        fid = last["images"][f"digits/{key}"]["fid"]
        row = next(line for line in text.splitlines() if line.startswith(f"| digits | {label} |"))
        assert fid > 0 and float(row.split("|")[5]) == pytest.approx(fid, abs=1.5e-3)
    for mask in ("center", "bottom_half", "random:0.5"):
        for name in ("mean", "1-NN", "5-NN", "vals", "shortrun"):
            psnr = last["completion_psnr"][f"digits/{mask}/{name}"]
            assert 0 < psnr < 60 and f"| {psnr:.2f} |" in text
    assert (tmp_path / "coop" / "digits_vals.png").exists()

    R = bench.ToyResult
    ref = R("d", "persistent", "p", grad_evals=1000, kl=0.5)
    fast = R("d", "vals", "v", curve=[(1, 1, 100, 0.9), (2, 2, 150, 0.4), (3, 3, 300, 0.2)])
    assert bench.reach_ratio([ref, fast], "d")[0] == pytest.approx(0.15)
    slow = R("d", "vals", "v", grad_evals=800, curve=[(1, 1, 800, 0.6)])
    assert bench.reach_ratio([ref, slow], "d")[0] is None
