"""TensorBoard logging (``train.tensorboard = true``): training scalars, evaluation numbers
and figures, and no step logged twice after a resume or a rollback (``purge_step``).

The always-run test swaps in a recording SummaryWriter (tensorboard is an optional
package); the second reads real event files where tensorboard is installed."""

from __future__ import annotations

import shutil
import sys
import types
from collections import Counter
from pathlib import Path

import pytest

from ebmlab.config import load_config
from ebmlab.experiment import RunConfig
from ebmlab.run import load_run_config
from ebmlab.train import resume_run, start_run

TINY = ["model.width=16", "model.depth=2", "method.n_steps=3", "train.batch_size=32",
        "train.progress=false", "train.longrun_factor=1", "data.n_train=400", "data.n_test=200",
        "train.plot_every=0", "train.iterations=12", "train.ckpt_every=4", "train.log_every=1",
        "train.tensorboard=true"]


def killed_after_logging_past_a_checkpoint(out: Path) -> None:
    """Train to iteration 6 (checkpoints at 4 and 6), then lose the checkpoint at 6: as a
    kill between two checkpoints leaves it, steps 5 and 6 are logged but not saved."""
    trainer = start_run(load_config(RunConfig, overrides=TINY), out)
    assert trainer.fit(until=6) == {}
    if trainer._tb is not None:
        trainer._tb.close()
    shutil.rmtree(out / "checkpoints" / "ckpt-00000006")
    (out / "checkpoints" / "LATEST").unlink()


class RecordingWriter:
    writers: list[RecordingWriter] = []

    def __init__(self, log_dir: str, purge_step: int | None = None) -> None:
        self.log_dir, self.purge_step = log_dir, purge_step
        self.scalars: list[tuple[str, float, int]] = []
        self.images: list[tuple[str, tuple, int]] = []
        RecordingWriter.writers.append(self)

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def add_image(self, tag, image, step, dataformats="CHW"):
        assert dataformats == "HWC" and image.ndim == 3 and image.shape[2] == 3
        self.images.append((tag, image.shape, step))

    def flush(self):
        pass

    def close(self):
        pass


@pytest.fixture
def recording(monkeypatch):
    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = RecordingWriter  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    RecordingWriter.writers = []
    return RecordingWriter.writers


def test_scalars_evaluation_figures_and_purge_on_resume(tmp_path, recording):
    out = tmp_path / "run"
    killed_after_logging_past_a_checkpoint(out)
    first = recording[0]
    assert first.purge_step is None
    assert [s for t, _, s in first.scalars if t == "loss"] == [1, 2, 3, 4, 5, 6]

    trainer = resume_run(load_run_config(out, []), out)
    assert trainer.iteration == 4
    summary = trainer.fit()
    resumed = recording[-1]
    assert resumed.purge_step == 5  # TensorBoard hides steps >= 5 of the killed session
    assert [s for t, _, s in resumed.scalars if t == "loss"] == list(range(5, 13))
    tags = {t: (v, s) for t, v, s in resumed.scalars}
    assert tags["eval/kl"] == (pytest.approx(summary["kl"]), 12)
    assert "eval/nll" in tags and "eval/log_z" in tags
    assert "longrun/data/kde_kl" in tags and "longrun/model/mmd2" in tags
    figures = {t for t, _, s in resumed.images if s == 12}
    assert {"figures/density", "figures/samples", "figures/diagnosis",
            "figures/longrun_data", "figures/longrun_model"} <= figures


def test_real_event_files_have_no_duplicated_step(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    killed_after_logging_past_a_checkpoint(out)
    resume_run(load_run_config(out, []), out).fit()
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0}).Reload()
    steps = [e.step for e in events.Scalars("loss")]
    assert Counter(steps).most_common(1)[0][1] == 1 and sorted(steps) == list(range(1, 13))
    assert "eval/kl" in events.Tags()["scalars"]
    assert "figures/density" in events.Tags()["images"]
