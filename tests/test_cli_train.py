"""``ebmlab train | eval | sample --run | plot`` end to end, on tiny settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import ebmlab
from ebmlab.cli import main

TINY = ["model.width=16", "model.depth=2", "method.n_steps=5", "train.batch_size=32",
        "train.progress=false", "train.longrun_factor=2",
        "data.n_train=500", "data.n_test=200", "train.plot_every=0", "train.iterations=12",
        "train.ckpt_every=4"]


def sets(*extra):
    out = []
    for s in [*TINY, *extra]:
        out += ["--set", s]
    return out


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def last_json(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("method", ["short_run", "cd"])
def test_other_methods_train(tmp_path, capsys, method):
    code, stdout, err = run(capsys, "train", *sets(f"method.name={method}", "train.iterations=4"),
                            "--out", str(tmp_path / "run"))
    assert code == 0, err
    assert last_json(stdout)["method"] == method


def test_train_eval_sample_plot(tmp_path, capsys):
    method = "persistent"
    out = tmp_path / "run"
    code, stdout, err = run(capsys, "train", *sets(f"method.name={method}"), "--out", str(out))
    assert code == 0, err
    summary = last_json(stdout)
    assert summary["iteration"] == 12 and summary["kl"] > 0
    assert "exact KL(p_data || p_model)" in err
    for name in ("config.toml", "metrics.jsonl", "summary.json", "density.png", "diagnosis.png",
                 "longrun.png", "samples.png"):
        assert (out / name).exists(), name

    code, stdout, _ = run(capsys, "eval", "--run", str(out))
    assert code == 0
    ev = last_json(stdout)
    assert ev["kl"] == pytest.approx(summary["kl"], rel=1e-6) and "nll" in ev

    code, stdout, _ = run(capsys, "sample", "--run", str(out), "--chains", "50")
    assert code == 0
    printed = last_json(stdout)
    x = np.load(printed["out"] + "/samples.npy")
    assert x.shape == (50, 2) and np.isfinite(x).all()
    saved = json.loads((out / "sample" / "summary.json").read_text())  # like target mode's
    assert saved["chains"] == 50 and saved["seed"] == 0 and saved["iteration"] == 12
    assert np.isfinite(saved["mean_energy"]) and saved["mmd2_to_test"] < 1
    assert saved["out"] == printed["out"] and (out / "sample" / "samples.png").exists()

    code, stdout, _ = run(capsys, "plot", "--run", str(out))
    assert code == 0 and len(last_json(stdout)["plots"]) >= 3

    loaded = ebmlab.load_run(out)
    assert loaded.iteration == 12 and loaded.config.method.name == method
    assert loaded.energy(loaded.sample(4).new_zeros(4, 2)).shape == (4,)
    assert loaded.summary["kl"] == pytest.approx(summary["kl"], abs=1e-5)  # like .config
    # Fresh samples on every call unless a seed is given; the global RNG is not touched.
    state = torch.random.get_rng_state()
    a, b = loaded.sample(8), loaded.sample(8)
    assert not torch.equal(a, b)
    again = loaded.sample(8, seed=loaded.last_seed)
    assert torch.equal(b, again)
    assert torch.equal(loaded.sample(8, seed=3), loaded.sample(8, seed=3))
    assert torch.equal(torch.random.get_rng_state(), state)


def test_resume_continues_to_more_iterations(tmp_path, capsys):
    import torch

    out = tmp_path / "run"
    code, stdout, _ = run(capsys, "train", *sets(), "--out", str(out))
    first = last_json(stdout)
    code, stdout, err = run(capsys, "train", "--resume", str(out), "--set",
                            "train.iterations=20")
    assert code == 0, err
    assert last_json(stdout)["iteration"] == 20 and "iteration 12 of 20" in err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    iters = [r["iteration"] for r in records]
    assert iters == sorted(set(iters)) and iters[-1] == 20
    # Training time adds up over the two sessions: it never restarts from 0.
    seconds = [r["seconds"] for r in records]
    assert seconds == sorted(seconds) and seconds[-1] > first["seconds"] > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seconds"] == pytest.approx(seconds[-1], abs=0.01)
    # What made the run: versions, command lines, git commit, per session.
    started, resumed = summary["sessions"]
    assert summary["provenance"] == resumed and resumed["from_iteration"] == 12
    assert started["command"].startswith("ebmlab train --set model.width=16")
    assert resumed["command"] == f"ebmlab train --resume {out} --set train.iterations=20"
    assert started["ebmlab"] == ebmlab.__version__ and started["torch"] == torch.__version__
    assert "git_commit" in started
    header = (out / "config.toml").read_text().split("\n[", 1)[0]
    assert f"started by ebmlab {ebmlab.__version__} (torch {torch.__version__}" in header
    assert "resumed at iteration 12" in header and resumed["command"] in header


def test_existing_run_directory_is_refused_and_untouched(tmp_path, capsys):
    out = tmp_path / "run"
    assert run(capsys, "train", *sets(), "--out", str(out))[0] == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, _, err = run(capsys, "train", *sets(), "--out", str(out))
    assert code == 2 and "already exists" in err and len(err.strip().splitlines()) == 1
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("argv, message", [
    (["--set", "train.iterations=-1"], "train.iterations must be >= 1"),
    (["--set", "train.lrr=1"], "unknown key train.lrr"),
    (["--set", "sampler.step_size=fast"], "[samplers.negatives] step_size must be a number"),
    (["--config", "missing.toml"], "does not exist"),
    (["--set", "data.name=npy", "--set", "data.path=nope.npy"], "nope.npy"),
])
def test_bad_config_is_one_line_exit_2_nothing_written(tmp_path, capsys, monkeypatch, argv,
                                                       message):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "train", *argv)
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_paths_given_with_set_and_out_expand_the_home_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    np.save(tmp_path / "pts.npy", np.random.default_rng(0).normal(size=(300, 2)))
    code, stdout, err = run(capsys, "train", "--set", "data.name=npy", "data.path=~/pts.npy",
                            *sets("train.iterations=2"), "--out=~/run")
    assert code == 0, err
    assert last_json(stdout)["out"] == str(tmp_path / "run")
    assert f'path = "{tmp_path / "pts.npy"}"' in (tmp_path / "run" / "config.toml").read_text()


def test_user_array_of_any_scale_trains_with_defaults(tmp_path, capsys):
    rng = np.random.default_rng(0)
    centers = np.array([[1000.0, -50.0], [1040.0, -30.0]])
    x = centers[rng.integers(0, 2, 600)] + rng.normal(size=(600, 2)) * [4.0, 2.0]
    np.save(tmp_path / "points.npy", x.astype(np.float32))
    out = tmp_path / "run"
    code, stdout, err = run(capsys, "train", "--set", "data.name=npy", "--set",
                            f"data.path={tmp_path / 'points.npy'}", *sets(), "--out", str(out))
    assert code == 0, err
    summary = last_json(stdout)
    assert "kl" not in summary and np.isfinite(summary["nll"])
    samples = np.load(last_json(run(capsys, "sample", "--run", str(out), "--chains", "100")[1])
                      ["out"] + "/samples.npy")
    # samples live where the data live, not near the origin
    assert np.abs(samples.mean(0) - x.mean(0)).max() < 60


@pytest.mark.parametrize("content, message", [
    (b"not a numpy file", "points.npy"),
    (None, "file not found"),
])
def test_missing_or_corrupt_data_file(tmp_path, capsys, content, message):
    path = tmp_path / "points.npy"
    if content is not None:
        path.write_bytes(content)
    code, _, err = run(capsys, "train", "--set", "data.name=npy", "--set", f"data.path={path}",
                       "--out", str(tmp_path / "run"))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
