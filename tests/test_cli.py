"""The ``ebmlab sample`` command end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ebmlab.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_sample_writes_samples_plots_and_summary(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run(capsys, "sample", "--target", "8gaussians", "--sampler", "mala",
                          "--steps", "200", "--chains", "400", "--out", str(out))
    assert code == 0
    summary = json.loads(stdout.strip().splitlines()[-1])
    x = np.load(out / "samples.npy")
    assert x.shape == (400, 2) and np.isfinite(x).all()
    for name in ("samples.png", "traces.png"):
        assert (out / name).stat().st_size > 1000
    assert json.loads((out / "summary.json").read_text())["chains"] == 400
    assert 0 < summary["acceptance"] < 1
    # MALA started uniformly on the box reaches the modes: MMD near the exact-vs-exact floor.
    assert summary["mmd2_to_exact"] < 0.01
    assert abs(summary["mean_energy"] - summary["exact_mean_energy"]) < 0.3


@pytest.mark.parametrize("sampler", ["langevin", "anila", "hmc", "underdamped", "svgd"])
def test_every_sampler_runs_from_the_command_line(tmp_path, capsys, sampler):
    code, stdout, _ = run(capsys, "sample", "--target", "gaussian", "--sampler", sampler,
                          "--steps", "30", "--chains", "64", "--out", str(tmp_path / sampler))
    assert code == 0 and json.loads(stdout)["steps"] == 30


def test_sampler_options_are_passed(tmp_path, capsys):
    code, stdout, _ = run(capsys, "sample", "--sampler", "hmc", "--option", "n_leapfrog=3",
                          "--steps", "5", "--chains", "8", "--out", str(tmp_path / "o"))
    assert code == 0 and "n_leapfrog=3" in json.loads(stdout)["sampler"]


def test_existing_output_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "keep"
    out.mkdir()
    (out / "samples.npy").write_bytes(b"precious")
    code, _, err = run(capsys, "sample", "--steps", "2", "--chains", "4", "--out", str(out))
    assert code == 2 and "refusing to overwrite" in err and len(err.strip().splitlines()) == 1
    assert (out / "samples.npy").read_bytes() == b"precious"


def test_default_output_folder_gets_a_fresh_suffix(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert run(capsys, "sample", "--steps", "2", "--chains", "4")[0] == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "sample-rings-mala", "sample-rings-mala-1"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--sampler", "gibbs"], "--sampler must be one of"),
        (["--target", "moon"], "--target must be one of"),
        (["--step-size", "-1"], "step_size"),
        (["--chains", "0"], "--chains must be >= 1"),
        (["--option", "n_leapfrog"], "key=value"),
        (["--sampler", "mala", "--option", "n_leapfrog=3"], "no option 'n_leapfrog'"),
    ],
)
def test_bad_values_are_one_line_errors(tmp_path, capsys, argv, message):
    code, _, err = run(capsys, "sample", *argv, "--steps", "2", "--out", str(tmp_path / "x"))
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_divergence_is_reported_not_hidden(tmp_path, capsys):
    code, _, err = run(capsys, "sample", "--target", "gaussian", "--sampler", "langevin",
                       "--step-size", "50", "--steps", "400", "--chains", "8",
                       "--out", str(tmp_path / "d"))
    assert code == 1 and "non-finite" in err and "at step" in err
    assert not (tmp_path / "d").exists()


HEAVY = ("torch", "numpy", "matplotlib")


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["train", "--help"],
                                  ["sample", "--help"], ["eval", "--help"], ["plot", "--help"],
                                  ["config", "--help"]], ids=" ".join)
def test_help_and_version_import_no_torch(argv):
    """``--help`` is instant: the CLI imports torch, numpy and matplotlib only for a command
    that needs them, after parsing (``python -m ebmlab`` run in a fresh interpreter)."""
    import subprocess
    import sys

    probe = ("import runpy, sys\n"
             f"sys.argv = ['ebmlab', *{argv!r}]\n"
             "try:\n    runpy.run_module('ebmlab', run_name='__main__', alter_sys=True)\n"
             "except SystemExit as e:\n    code = e.code\n"
             f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
             "print('HEAVY', heavy, 'CODE', code, file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60)
    assert "HEAVY [] CODE 0" in proc.stderr, proc.stderr[-2000:]
    assert "ebmlab" in proc.stdout


def test_version(capsys):
    import ebmlab

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"ebmlab {ebmlab.__version__}"


def test_cli_sampler_names_are_the_library_samplers():
    from ebmlab.cli import SAMPLER_DEFAULTS
    from ebmlab.samplers import SAMPLERS

    assert set(SAMPLER_DEFAULTS) == set(SAMPLERS)
