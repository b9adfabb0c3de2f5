"""Multi-process training (torch.distributed, gloo, 2 CPU processes): learning like one
process, identical parameters on every rank, bit-identical resume after a kill, and one
failing rank stopping all of them with one message."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from ebmlab.checkpoint import load_checkpoint
from ebmlab.distributed import SINGLE, Dist, batch_share, launch

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="torch.distributed is not available")

# The default job (8gaussians, CD-10 with MALA), short.
FAST = ["--set", "train.iterations=300", "--set", "train.progress=false",
        "--set", "train.plot_every=0", "--set", "train.longrun_factor=2"]


def ebmlab(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "ebmlab", *args], capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def final_modules(run: Path) -> dict:
    state, _ = load_checkpoint(run)
    return state["modules"]


def test_batch_shares_add_up_and_single_process_is_a_no_op():
    assert [batch_share(Dist(r, 3), 200) for r in range(3)] == [67, 67, 66]
    assert batch_share(SINGLE, 200) == 200
    with pytest.raises(ValueError, match="smaller than the number of processes"):
        batch_share(Dist(0, 4), 3)
    assert not SINGLE.enabled and SINGLE.is_main


def test_two_processes_learn_like_one(tmp_path):
    one = json.loads(ebmlab("train", *FAST, "--out", str(tmp_path / "one")).stdout)
    proc = ebmlab("train", "--nproc", "2", *FAST, "--out", str(tmp_path / "two"))
    two = json.loads(proc.stdout)  # one summary line: rank 0's
    assert proc.stdout.count("\n") == 1
    assert "2 processes" in proc.stderr
    # Same global batch and settings, so the same learning: both models are far better than
    # the initial one (KL ≈ 2.5 nats) and within the seed-to-seed spread of each other.
    assert one["kl"] < 0.5 and two["kl"] < 0.5, (one["kl"], two["kl"])
    assert abs(one["kl"] - two["kl"]) < 0.25, (one["kl"], two["kl"])
    state, _ = load_checkpoint(tmp_path / "two")
    assert state["world_size"] == 2 and len(state["ranks"]) == 2
    # every rank keeps its own random stream (seed + rank)
    assert not torch.equal(state["ranks"][0]["rng"], state["ranks"][1]["rng"])


def test_resume_after_a_kill_is_bit_identical(tmp_path):
    args = ["--nproc", "2", "--set", "train.iterations=160", "--set", "train.ckpt_every=40",
            "--set", "train.progress=false", "--set", "train.plot_every=0",
            "--set", "train.longrun_factor=1"]
    ebmlab("train", *args, "--out", str(tmp_path / "whole"))
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "ebmlab", "train", *args, "--out",
                             str(killed)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (killed / "checkpoints" / "ckpt-00000080").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint to kill at"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both training processes
    proc.wait()
    state, _ = load_checkpoint(killed)
    assert state["iteration"] < 160
    # a different number of processes is refused with one line
    wrong = ebmlab("train", "--resume", str(killed), check=False)
    assert wrong.returncode == 2 and "--nproc 2" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1
    ebmlab("train", "--nproc", "2", "--resume", str(killed))
    a, b = final_modules(tmp_path / "whole"), final_modules(killed)
    for name in a:
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), (name, key)


FAIL_ON_RANK_1 = textwrap.dedent("""
    import os
    import sys
    from ebmlab.cli import main
    from ebmlab.methods.mle import MaximumLikelihood
    from ebmlab.samplers import NonFiniteError

    # rank 1's sampler blows up at iteration 7
    original, calls = MaximumLikelihood.step, []
    def failing(self, batch, rng=None):
        calls.append(1)
        if os.environ["RANK"] == "1" and len(calls) == 8:
            raise NonFiniteError("step 3 of mala: non-finite energy (planted)")
        return original(self, batch, rng)
    MaximumLikelihood.step = failing
    raise SystemExit(main(["train", "--out", sys.argv[1], "--set", "train.iterations=50",
                           "--set", "train.on_failure=stop", "--set", "train.progress=false"]))
""")


def test_a_failure_on_one_rank_stops_every_rank_with_one_message(tmp_path, capfd):
    script = tmp_path / "fail.py"
    script.write_text(FAIL_ON_RANK_1)
    started = time.monotonic()
    code = launch(2, [str(script), str(tmp_path / "run")])
    err = capfd.readouterr().err
    assert code == 1
    assert time.monotonic() - started < 120  # nobody waited for a collective forever
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert len(lines) == 1, err
    assert "iteration 7" in lines[0] and "planted" in lines[0] and "process 1 of 2" in lines[0]


def test_nproc_rejects_bad_values(tmp_path):
    bad = ebmlab("train", "--nproc", "0", "--out", str(tmp_path / "x"), check=False)
    assert bad.returncode == 2 and "--nproc must be >= 1" in bad.stderr
    assert not (tmp_path / "x").exists()


ALL_REDUCE_STEP = textwrap.dedent("""
    import json, os, sys
    import torch
    import torch.distributed as dist
    from torch import nn
    from ebmlab.distributed import Dist, all_reduce_step, setup

    d = setup("cpu")
    r = d.rank
    a, b, c = (nn.Parameter(torch.zeros(3)) for _ in range(3))
    groups = {"energy": [a, b], "generator": [c]}
    a.grad = torch.full((3,), float(r + 1))          # both ranks: mean 1.5
    if r == 1:
        b.grad = torch.full((3,), 4.0)               # rank 1 only: mean 2.0 (0 counts)
    present = ["energy"] + (["generator"] if r == 0 else [])
    losses = {"energy": 1.0 + r, **({"generator": 5.0} if r == 0 else {})}
    out = all_reduce_step(d, groups, present, losses, {"m": 10.0 * (r + 1), "z": 1.0}, None)
    res = {"present": out.present, "losses": out.losses, "metrics": out.metrics(),
           "a": a.grad.tolist(), "b": b.grad.tolist(), "c": c.grad}
    failed = all_reduce_step(d, groups, ["energy"], {"energy": 1.0}, {"m": 1.0},
                             "iteration 3: planted" if r == 1 else None)
    res["error"] = failed.error
    res["mismatch"] = []
    for names in (["m" if r else "n"], ["m", "n"][:r + 1]):  # other names; more names
        try:
            all_reduce_step(d, groups, ["energy"], {"energy": 1.0}, dict.fromkeys(names, 1.0),
                            None)
            res["mismatch"].append(None)
        except RuntimeError as e:
            res["mismatch"].append(str(e))
    print(json.dumps(res))
    dist.destroy_process_group()
""")


def test_one_all_reduce_carries_failures_gradients_losses_and_metrics(tmp_path):
    script = tmp_path / "step.py"
    script.write_text(ALL_REDUCE_STEP)
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", WORLD_SIZE="2", OMP_NUM_THREADS="1")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        env["MASTER_PORT"] = str(s.getsockname()[1])
    procs = [subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)})
             for r in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-1000:] for o in outs]
    res = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
    assert res[0] == res[1]  # every rank knows the same
    got = res[0]
    assert got["present"] == ["energy", "generator"]
    assert got["losses"] == {"energy": 1.5, "generator": 5.0}  # mean over ranks that had it
    assert got["metrics"] == {"m": 15.0, "z": 1.0}
    assert got["a"] == [1.5] * 3 and got["b"] == [2.0] * 3 and got["c"] is None
    assert got["error"] == "iteration 3: planted (process 1 of 2)"
    assert all("different metrics" in m for m in got["mismatch"]), got["mismatch"]
