"""Learning that never fails silently: divergence stops or rolls back, resume refuses unsafe
changes and writes nothing, failed starts can be retried, damaged checkpoints are reported,
batch jobs see progress, Ctrl-C keeps a checkpoint; load_run speaks the data's units."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import ebmlab
from ebmlab.cli import main
from ebmlab.config import load_config
from ebmlab.divergence import DivergenceMonitor
from ebmlab.experiment import RunConfig
from ebmlab.train import start_run

TINY = ["model.width=16", "model.depth=2", "method.n_steps=5", "train.batch_size=32",
        "train.progress=false", "train.longrun_factor=1", "data.n_train=500",
        "data.n_test=200", "train.plot_every=0", "train.iterations=12", "train.ckpt_every=4"]


def sets(*values: str) -> list[str]:
    return [a for v in (*TINY, *values) for a in ("--set", v)]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- divergence ---------------------------------------------------------------------------


def test_monitor_trips_on_runaway_energies_and_one_sided_d_st_not_on_oscillation():
    healthy = DivergenceMonitor(window=50)
    rng = np.random.default_rng(0)
    for i in range(2000):  # d_st oscillating around 0, energies drifting slowly
        healthy.update({"d_st": float(rng.normal(0, 0.5)), "energy_pos": 0.01 * i,
                        "energy_neg": 0.01 * i})
        assert healthy.status() is None
    runaway = DivergenceMonitor(window=50)
    tripped = None
    for i in range(2000):
        scale = 10 ** (i / 200)  # energies grow tenfold every 200 iterations
        runaway.update({"d_st": float(rng.normal(0, 0.5)) * scale, "energy_pos": scale,
                        "energy_neg": scale})
        if runaway.status():
            tripped = i
            break
    assert tripped is not None and 600 <= tripped <= 700, tripped  # 1000x its smallest scale
    assert "energy scale grew" in runaway.status()
    stuck = DivergenceMonitor(window=50)
    for _ in range(30):  # settled: d_st oscillates around 0 ...
        stuck.update({"d_st": float(rng.normal(0, 0.5)), "energy_pos": 1.0,
                      "energy_neg": 1.0, "energy_sd": 1.0})
    for _ in range(100):  # ... then negatives 7 data-energy spreads above the data
        stuck.update({"d_st": -7.0 + 0.1 * float(rng.normal()), "energy_pos": 1.0,
                      "energy_neg": 8.0, "energy_sd": 1.0})
    assert "d_st stuck at -7" in stuck.status()
    start = DivergenceMonitor(window=50)
    for i in range(300):  # learning from noise: one-sided until the model first catches up
        d = -20.0 * (1 - i / 150) if i < 150 else float(rng.normal(0, 0.5))
        start.update({"d_st": d, "energy_pos": 1.0, "energy_neg": 1.0 - d, "energy_sd": 1.0})
        assert start.status() is None, i
    assert start.armed
    state = stuck.state_dict()
    twin = DivergenceMonitor(window=50)
    twin.load_state_dict(json.loads(json.dumps(state)))  # as a checkpoint stores it
    assert twin.status() == stuck.status() and twin.state_dict() == state


def test_too_large_step_stops_with_one_line_and_exit_1(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--out", str(out), "--set", "method.name=persistent",
                 "--set", "samplers.negatives.step_size=0.5", "--set", "train.iterations=600",
                 "--set", "train.ckpt_every=100",
                 "--set", "train.on_failure=stop", "--set", "train.progress=false",
                 "--set", "data.n_train=2000"])
    line = one_line_error(capsys)
    assert code == 1
    assert "learning diverged" in line and "iteration" in line and "try" in line
    assert not (out / "summary.json").exists()


def test_divergence_rolls_back_with_lower_learning_rate_then_stops(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--out", str(out), "--set", "method.name=persistent",
                 "--set", "samplers.negatives.step_size=0.5", "--set", "train.iterations=1500",
                 "--set", "train.ckpt_every=50",
                 "--set", "train.max_rollbacks=2", "--set", "train.progress=false",
                 "--set", "data.n_train=2000"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.count("rolled back") == 2 and "after 2 rollback(s)" in err
    assert "learning-rate factor 0.25" in err


def test_rollbacks_to_the_same_checkpoint_keep_lowering_the_learning_rate(tmp_path, capsys):
    """Failures after a rollback, with no checkpoint written in between (unstable learning
    skips them), go back to the same checkpoint: the rate must still halve each time, or
    the run replays the first rollback's steps bit for bit and fails identically."""
    from ebmlab.train import TrainingError

    cfg = load_config(RunConfig, overrides=[*TINY, "train.iterations=40", "train.ckpt_every=4",
                                            "train.max_rollbacks=3"])
    trainer = start_run(cfg, tmp_path / "run")
    trainer.fit(until=4)
    factors = []
    for k in range(3):
        trainer.train_step()  # a step past the checkpoint, then a failure
        trainer._on_failure(TrainingError(f"iteration 5: planted {k}"))
        assert trainer.iteration == 4  # back at the one checkpoint
        factors.append(trainer.lr_factor)
    assert factors == [0.5, 0.25, 0.125]


# -- resume ---------------------------------------------------------------------------------


def test_resume_refuses_unsafe_changes_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *sets()]) == 0
    before = snapshot(out)
    for change, key in (("data.name=rings", "data.name"), ("model.width=32", "model.width"),
                        ("method.n_steps=7", "method.n_steps"),
                        ("sampler.step_size=0.1", "samplers.negatives.step_size")):
        capsys.readouterr()
        assert main(["train", "--resume", str(out), "--set", change]) == 2
        assert f"cannot change {key}" in one_line_error(capsys)
    assert snapshot(out) == before
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--set", "train.iterations=16",
                 "--set", "train.lr=5e-4", "--set", "train.log_every=2"]) == 0


def test_resume_without_checkpoint_and_retry_of_a_failed_start(tmp_path, capsys):
    out = tmp_path / "run"
    # fails at the first iteration: before any checkpoint
    assert main(["train", "--out", str(out), *sets("method.name=persistent",
                                                    "samplers.negatives.step_size=1e30",
                                                    "train.on_failure=stop")]) == 1
    assert "no checkpoint was written yet" in one_line_error(capsys)
    assert main(["train", "--resume", str(out)]) == 2
    line = one_line_error(capsys)
    assert "has no checkpoint" in line and f"--out {out}" in line
    # the same --out can be used again
    assert main(["train", "--out", str(out), *sets()]) == 0
    assert (out / "summary.json").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", "--resume", str(empty)]) == 2
    one_line_error(capsys)


def test_damaged_newest_checkpoint_falls_back_with_a_warning(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *sets("train.iterations=8")]) == 0
    newest = out / "checkpoints" / "ckpt-00000008"
    (newest / "tensors.safetensors").write_bytes(b"garbage")
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--set", "train.iterations=12"]) == 0
    err = capsys.readouterr().err
    assert "ckpt-00000008 is damaged" in err and "ckpt-00000004" in err
    for folder in (out / "checkpoints").glob("ckpt-*"):
        for f in folder.iterdir():
            f.write_bytes(b"x")
    assert main(["train", "--resume", str(out)]) == 2
    assert "no loadable checkpoint" in one_line_error(capsys)


def test_changed_model_shape_on_resume_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *sets()]) == 0
    text = (out / "config.toml").read_text().replace("width = 16", "width = 24")
    (out / "config.toml").write_text(text)  # a hand-edited config: the shapes differ
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--set", "train.iterations=16"]) == 2
    assert "does not match this run's model" in one_line_error(capsys)


def test_cosine_schedule_length_is_explicit():
    cfg = load_config(RunConfig, overrides=["train.iterations=100", "train.schedule_length=50"])
    trainer_lr = []
    from ebmlab.train import Trainer

    t = Trainer.__new__(Trainer)
    t.cfg, t.lr_factor = cfg, 1.0
    t.method = type("M", (), {"lr_scale": lambda self, g: 1.0})()
    for it in (0, 25, 50, 80):
        trainer_lr.append(t.learning_rate(it, "energy"))
    assert trainer_lr == pytest.approx([1e-3, 5e-4, 0.0, 0.0])


# -- batch jobs, Ctrl-C ---------------------------------------------------------------------


def test_progress_lines_when_stderr_is_not_a_terminal(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *sets("train.progress=true",
                                                    "train.iterations=40")]) == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("train: ")]
    assert len(lines) == 20 and lines[-1].startswith("train: 40/40 (100%)")


def test_ctrl_c_writes_a_final_checkpoint(tmp_path, capsys):
    cfg = load_config(RunConfig, overrides=[*TINY, "train.iterations=100",
                                            "train.ckpt_every=50"])
    trainer = start_run(cfg, tmp_path / "run")
    step = trainer.method.step

    def interrupted(batch, rng=None):
        if trainer.iteration == 7:
            raise KeyboardInterrupt
        return step(batch, rng)

    trainer.method.step = interrupted
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert (tmp_path / "run" / "checkpoints" / "ckpt-00000007").is_dir()


@pytest.mark.skipif(os.name != "posix", reason="SIGINT to a child process")
def test_ctrl_c_in_the_command(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "ebmlab.cli", "train", "--out", str(out),
                             *sets("train.iterations=100000", "train.ckpt_every=100000")],
                            stderr=subprocess.PIPE, text=True, env={**os.environ,
                                                                    "MPLBACKEND": "Agg"})
    deadline = time.time() + 60
    while not (out / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert list((out / "checkpoints").glob("ckpt-*"))


# -- data coordinates, batches, models from config --------------------------------------------


def test_load_run_energy_and_samples_are_in_data_units(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal([100.0, -5.0], [10.0, 0.1], size=(600, 2))
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *sets("data.name=npy",
                                                    f"data.path={tmp_path / 'x.npy'}")]) == 0
    run = ebmlab.load_run(out)
    data = run.trainer.data
    pts = torch.tensor(x[:5], dtype=torch.float32)
    expected = run.method.energy((pts - data.shift) / data.scale)
    torch.testing.assert_close(run.energy(pts), expected)
    samples = run.sample(500, seed=1)
    assert abs(float(samples[:, 0].mean()) - 100.0) < 10.0  # data units, not standardised
    assert run.summary["iteration"] == 12


def test_mapping_batches_reach_the_method(tmp_path):
    cfg = load_config(RunConfig, overrides=TINY)
    trainer = start_run(cfg, tmp_path / "run")
    seen = {}
    step = trainer.method.step

    def spy(batch, rng=None):
        seen["batch"] = batch
        return step(batch, rng)

    trainer.method.step = spy
    train = trainer.data.train
    trainer.data.train = {"x": train, "mask": torch.ones(train.shape[0], 2)}
    trainer.train_step()
    assert set(seen["batch"]) == {"x", "mask"} and seen["batch"]["mask"].shape == (32, 2)


def test_conv_energy_from_config_keeps_images(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--set", "data.name=digits", "--set",
                 "model.name=conv", "--set", "model.width=8", "--set", "model.depth=2",
                 "--set", "train.iterations=3", "--set", "train.batch_size=16", "--set",
                 "method.n_steps=2", "--set", "train.progress=false",
                 "--set", "train.longrun_factor=1"]) == 0
    run = ebmlab.load_run(out)
    assert run.trainer.data.shape == (1, 8, 8)
    assert type(run.method.energy.energy).__name__ == "ConvEnergy"  # inside the reference
    assert run.sample(4).shape == (4, 1, 8, 8)
    assert (out / "samples.png").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert "energy_test" in summary

