"""Choosing torch's CPU threads: nothing changes on import; set_threads / num_threads."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import ebmlab


def test_importing_ebmlab_changes_no_threads():
    probe = ("import torch; before = torch.get_num_threads(); import ebmlab, ebmlab.samplers, "
             "ebmlab.train; print(before, torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out[0] == out[1]


def test_set_threads_and_the_context_manager_restore():
    start = torch.get_num_threads()
    try:
        assert ebmlab.set_threads(2) == start and torch.get_num_threads() == 2
        with ebmlab.num_threads(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), ebmlab.num_threads(1):  # restored on an error too
            raise RuntimeError("boom")
        assert torch.get_num_threads() == 2
        with ebmlab.num_threads(0):  # 0 / None: leave it as it is
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(start)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="threads must be an integer >= 1"):
            ebmlab.set_threads(bad)


def test_training_uses_its_threads_only_while_it_runs(tmp_path):
    from ebmlab.config import load_config
    from ebmlab.experiment import RunConfig
    from ebmlab.train import start_run

    start = torch.get_num_threads()
    seen = []
    try:
        torch.set_num_threads(2)
        cfg = load_config(RunConfig, overrides=[
            "train.iterations=3", "train.progress=false", "train.plot_every=0",
            "data.n_train=300", "data.n_test=200"])
        trainer = start_run(cfg, tmp_path / "run")
        assert torch.get_num_threads() == 2  # building a run changes nothing
        step = trainer.train_step
        trainer.train_step = lambda: (seen.append(torch.get_num_threads()), step())[1]
        assert trainer.fit(until=2) == {}  # stops after a checkpoint, nothing evaluated
        assert seen == [1, 1] and torch.get_num_threads() == 2  # train.threads = 1, then back
    finally:
        torch.set_num_threads(start)
