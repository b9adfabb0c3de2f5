"""The one training loop, for every method.

Each iteration: draw a data batch, ask the method for its losses (one per parameter
group), check them, back-propagate each loss to its own group only, check and clip
each group's gradients, step the optimisers of the groups that had a loss. The loop
logs ``metrics.jsonl``, watches for divergence (:mod:`ebmlab.divergence`), writes
atomic checkpoints (models, optimisers, chains, random state, iteration), rolls back
or stops on failure, and calls the evaluators (:mod:`ebmlab.evaluators`) at the end.
The trainer never knows which method it runs, nor how its model is sampled.

All randomness of the loop comes from one ``torch.Generator``, ``rng``, saved in
every checkpoint, so ``--resume`` continues bit-identically on CPU. Plots and the
long-run check draw from generators derived from ``(seed, iteration)`` and never
disturb it.
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ebmlab.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ebmlab.config import ConfigError, dump_toml
from ebmlab.distributed import (
    SINGLE,
    Dist,
    all_reduce_step,
    barrier,
    batch_share,
    broadcast_modules,
    gather_objects,
    rank_device,
)
from ebmlab.divergence import DivergenceMonitor
from ebmlab.experiment import Data, DataSpaceEnergy, RunConfig, build_method, load_data
from ebmlab.methods import Batch, Method, StepOutput
from ebmlab.provenance import header as provenance_header
from ebmlab.provenance import provenance
from ebmlab.samplers import NonFiniteError
from ebmlab.threads import num_threads

METRICS_FILE = "metrics.jsonl"
LONGRUN_FILE = "longrun.jsonl"
CONFIG_FILE = "config.toml"
SUMMARY_FILE = "summary.json"
RUN_FILES = (CONFIG_FILE, METRICS_FILE, LONGRUN_FILE, SUMMARY_FILE)


class TrainingError(RuntimeError):
    """Training stopped (non-finite values, divergence); the message is one line naming
    the iteration, the cause, the last good checkpoint and what to try."""


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _quiet(message: str) -> None:
    """The log of ranks other than 0."""


def n_rows(rows: Batch) -> int:
    return int(rows.shape[0] if isinstance(rows, Tensor) else next(iter(rows.values())).shape[0])


def take(rows: Batch, idx: Tensor) -> Batch:
    """Rows ``idx`` of a tensor or of every tensor of a mapping batch."""
    if isinstance(rows, Tensor):
        return rows[idx]
    return {k: v[idx] for k, v in rows.items()}


def make_optimizer(params: list[nn.Parameter], name: str, lr: float, beta1: float, beta2: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(beta1, beta2), weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=(beta1, beta2), weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)


@dataclass
class Trainer:
    """Builds everything from a config and trains into ``out``."""

    cfg: RunConfig
    out: Path
    log: Callable[[str], None] = _stderr
    dist: Dist = SINGLE  # this process among several (ebmlab.distributed); one by default
    data: Data = field(init=False)
    method: Method = field(init=False)
    groups: dict[str, list[nn.Parameter]] = field(init=False)
    optimizers: dict[str, torch.optim.Optimizer] = field(init=False)
    rng: torch.Generator = field(init=False)
    monitor: DivergenceMonitor = field(init=False)
    iteration: int = 0
    lr_factor: float = 1.0
    rollbacks: int = 0
    seconds: float = 0.0  # training time, summed over resumes
    # One entry per session (start, each resume): versions, command line, git commit
    # (ebmlab.provenance), kept in checkpoints, summary.json and config.toml's header.
    sessions: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        t = self.cfg.train
        if not self.dist.is_main:
            self.log = _quiet  # rank 0 alone logs
        try:
            self.device = torch.device(rank_device(self.dist, t.device))
            torch.empty(0, device=self.device)
        except (RuntimeError, AssertionError) as e:
            raise ConfigError(f"train.device {t.device!r} is not available: {e}") from None
        self.data = load_data(self.cfg.data).to(self.device)
        torch.manual_seed(t.seed)  # parameter initialisation
        self.method = build_method(self.cfg, self.data)
        for module in self.method.modules().values():
            module.to(self.device)
        broadcast_modules(self.dist, self.method.modules())
        self.batch_size = batch_share(self.dist, t.batch_size)
        self.groups = self.method.param_groups()
        seen: set[int] = set()
        for name, params in self.groups.items():
            if any(id(p) in seen for p in params):
                raise ValueError(f"parameter group {name!r} shares parameters with another")
            seen.update(id(p) for p in params)
        self.optimizers = {}
        for name, params in self.groups.items():
            o = self.cfg.optim_for(name)
            self.optimizers[name] = make_optimizer(params, o.optimizer, o.lr, o.beta1, o.beta2,
                                                   o.weight_decay)
        # One random stream per process: seed + rank (a single process: the seed itself).
        self.rng = torch.Generator(device=self.device).manual_seed(t.seed + self.dist.rank)
        self.monitor = DivergenceMonitor(check_d_st=self.method.d_st_settles)
        self.last_evaluation: dict[str, Any] | None = None
        self._tb: Any = None  # the TensorBoard SummaryWriter, opened at the first record
        self._tb_purge: int | None = None  # steps from here on are stale (resume, rollback)
        self._last_ckpt: int | None = None
        self._feature_space: Any = None  # the FID / KID classifier, loaded when first needed

    # -- pieces -------------------------------------------------------------------------
    @property
    def energy(self) -> nn.Module | None:
        """The model's energy in standardised coordinates (``None`` without a density)."""
        return self.method.energy_model()

    def learning_rate(self, iteration: int, group: str) -> float:
        """``group``'s learning rate at ``iteration``: its base rate × the method's scale ×
        the rollback factor, × a cosine over ``train.schedule_length`` when chosen."""
        o = self.cfg.optim_for(group)
        lr = o.lr * self.method.lr_scale(group) * self.lr_factor
        if o.lr_schedule == "cosine":
            length = self.cfg.train.schedule_length or self.cfg.train.iterations
            lr *= 0.5 * (1 + math.cos(math.pi * min(iteration, length) / length))
        return lr

    def state(self) -> dict[str, Any]:
        """Everything a checkpoint holds. With several processes this is collective: every
        rank's method state and random stream are gathered under ``"ranks"``."""
        own = {"method": self.method.state_dict(), "rng": self.rng.get_state()}
        per_rank = {"ranks": gather_objects(self.dist, own)} if self.dist.enabled else own
        return {
            "world_size": self.dist.world_size,
            "iteration": self.iteration,
            "lr_factor": self.lr_factor,
            "rollbacks": self.rollbacks,
            "seconds": self.seconds,
            "modules": {k: m.state_dict() for k, m in self.method.modules().items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            **per_rank,
            "monitor": self.monitor.state_dict(),
            "sessions": self.sessions,
        }

    def load_state(self, state: dict[str, Any], source: str = "checkpoint") -> None:
        saved_world = int(state.get("world_size", 1))
        if saved_world != self.dist.world_size:
            raise ConfigError(f"{source} was written by {saved_world} training process(es); "
                              f"this run has {self.dist.world_size}: resume with "
                              f"--nproc {saved_world}" if saved_world > 1 else
                              f"{source} was written by a single process; resume it without "
                              f"torchrun / --nproc")
        if "ranks" in state:  # this rank's own chains and random stream
            state = {**state, **state["ranks"][self.dist.rank]}
        try:
            for k, m in self.method.modules().items():
                m.load_state_dict(state["modules"][k])
            for k, o in self.optimizers.items():
                saved = dict(state["optimizers"][k])
                # JSON turned the per-parameter state keys into strings; the optimiser wants ints.
                saved["state"] = {int(i): v for i, v in saved["state"].items()}
                o.load_state_dict(saved)
        except (KeyError, RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
            raise ConfigError(f"{source} does not match this run's model ({first[:120]}); "
                              "was the model or method changed?") from None
        self.method.load_state_dict(state["method"])
        self.rng.set_state(state["rng"] if "rng" in state else state["generator"])
        self.iteration = int(state["iteration"])
        self.lr_factor = float(state["lr_factor"])
        self.rollbacks = int(state["rollbacks"])
        self.seconds = float(state.get("seconds", 0.0))
        self.monitor.load_state_dict(state.get("monitor", {}))
        self.sessions = [dict(s) for s in state.get("sessions", [])]
        self._last_ckpt = self.iteration
        self._tb_purge = self.iteration + 1  # TensorBoard hides what was logged after it

    def checkpoint(self) -> Path:
        """Write a checkpoint (rank 0 writes; with several processes all ranks take part
        and wait until it is on disk)."""
        state = self.state()
        path = self.out / "checkpoints" / f"ckpt-{self.iteration:08d}"
        if self.dist.is_main:
            path = save_checkpoint(self.out, self.iteration, state)
        barrier(self.dist)
        self._last_ckpt = self.iteration
        if self._tb is not None:
            self._tb.flush()
        return path

    def data_space_energy(self) -> DataSpaceEnergy:
        if self.energy is None:
            raise ValueError(f"method {self.method.name!r} has no energy (no density)")
        return DataSpaceEnergy(self.energy, self.data.shift, self.data.scale).to(self.device)

    def side_rng(self, salt: int) -> torch.Generator:
        """Randomness for plots / checks, independent of the training stream."""
        seed = (self.cfg.train.seed * 1_000_003 + self.iteration * 7919 + salt) % (2**63)
        return torch.Generator(device=self.device).manual_seed(seed)

    def model_samples(self, n: int, rng: torch.Generator | None = None,
                      n_steps: int | None = None, x0: Tensor | None = None,
                      start: str = "the given states") -> tuple[Tensor | None, str]:
        """``n`` model samples (standardised space) as the method draws them, and where they
        come from (``start`` names ``x0``); ``(None, "none")`` when the method cannot be
        sampled."""
        target = self.method.target()
        if target is None:
            return None, "none"
        x = self.method.sample(n, n_steps=n_steps, x0=x0, rng=rng)
        return x, target.describe(n_steps, origin=None if x0 is None else start)

    # -- one iteration --------------------------------------------------------------------
    def _losses_and_gradients(self, it: int) -> tuple[StepOutput, list[str]]:
        """One batch through the method, each loss back-propagated to its own group."""
        n = n_rows(self.data.train)
        idx = torch.randint(0, n, (self.batch_size,), generator=self.rng, device=self.device)
        batch = take(self.data.train, idx)
        try:
            out = self.method.step(batch, self.rng)
        except NonFiniteError as e:
            raise TrainingError(f"iteration {it}: {e}") from None
        unknown = sorted(set(out.losses) - set(self.groups))
        if unknown:
            raise ValueError(f"method {self.method.name!r} returned a loss for {unknown[0]!r}, "
                             f"not a parameter group ({sorted(self.groups)})")
        present = [g for g in self.groups if g in out.losses]
        for g in present:
            if not bool(torch.isfinite(out.losses[g])):
                raise TrainingError(f"iteration {it}: non-finite loss of the {g}")
        # Each loss to its own group only: two players sharing a graph (KALE) must not see
        # each other's loss, which a summed backward would give them.
        for i, g in enumerate(present):
            loss = out.losses[g]
            if loss.requires_grad:
                torch.autograd.backward(loss, inputs=self.groups[g],
                                        retain_graph=i < len(present) - 1)
        return out, present

    def train_step(self) -> dict[str, float]:
        it = self.iteration
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        error: str | None = None
        present: list[str] = []
        losses: dict[str, float] = {}
        method_metrics: dict[str, float] = {}
        try:
            out, present = self._losses_and_gradients(it)
            losses = {g: float(out.losses[g].detach()) for g in present}
            method_metrics = dict(out.metrics)
        except TrainingError as e:
            if not self.dist.enabled:
                raise
            error = str(e)  # a failure on one rank must reach all of them
        # several processes: one all-reduce shares failures, gradients, losses and metrics
        synced = all_reduce_step(self.dist, self.groups, present, losses, method_metrics,
                                 error)
        if synced.error is not None:
            raise TrainingError(synced.error)
        metrics: dict[str, float] = {}
        for g in synced.present:
            params = [p for p in self.groups[g] if p.grad is not None]
            clip = self.cfg.optim_for(g).grad_clip
            norm = torch.nn.utils.clip_grad_norm_(
                params, clip or float("inf"), error_if_nonfinite=False
            ) if params else torch.zeros(())
            if not bool(torch.isfinite(norm)):
                raise TrainingError(f"iteration {it}: non-finite gradient of the {g}")
            lr = self.learning_rate(it, g)
            for pg in self.optimizers[g].param_groups:
                pg["lr"] = lr
            self.optimizers[g].step()
            metrics.update({f"loss_{g}": synced.losses[g], f"grad_norm_{g}": float(norm),
                            f"lr_{g}": lr})
        metrics = {**synced.metrics(), **metrics}  # the method's metrics first, as logged
        if len(self.groups) == 1 and synced.present:
            metrics["loss"] = metrics[f"loss_{synced.present[0]}"]
        self.iteration += 1
        for k, v in metrics.items():
            if not math.isfinite(v):
                raise TrainingError(f"iteration {it}: non-finite {k}")
        return metrics

    # -- the loop -------------------------------------------------------------------------
    def fit(self, until: int | None = None) -> dict[str, Any]:
        """Train up to ``train.iterations`` and return the final summary.

        ``until`` stops early (after a checkpoint) at that iteration, as a kill right
        after that checkpoint would; then nothing is evaluated and ``{}`` is returned.
        Ctrl-C writes a checkpoint (unless learning looks unstable) and re-raises.
        """
        with num_threads(self.cfg.train.threads):  # train.threads, for this call only
            return self._fit(until)

    def _fit(self, until: int | None) -> dict[str, Any]:
        t = self.cfg.train
        stop = t.iterations if until is None else min(until, t.iterations)
        progress = _Progress(t.iterations, self.iteration, t.progress and self.dist.is_main,
                             self.log)
        main = self.dist.is_main
        started = time.perf_counter()
        base_seconds = self.seconds
        try:
            while self.iteration < stop:
                try:
                    metrics = self.train_step()
                    if t.divergence_check:
                        self.monitor.update(metrics)
                        reason = self.monitor.status()
                        if reason:
                            raise TrainingError(f"iteration {self.iteration}: learning "
                                                f"diverged: {reason}")
                except TrainingError as e:
                    self._on_failure(e)
                    continue
                it = self.iteration
                self.seconds = base_seconds + time.perf_counter() - started
                progress.update(it, metrics, self.seconds)
                if main and (it % t.log_every == 0 or it == t.iterations):
                    self._log_metrics({"iteration": it, **metrics, "seconds": self.seconds})
                if it % t.ckpt_every == 0 or it == t.iterations:
                    self._checkpoint_if_healthy()
                    if main and it < t.iterations and self._quality_due():
                        self.log_quality(self.quality())
                if main and t.plot_every and it % t.plot_every == 0 and it < t.iterations:
                    self.plots()
                if main and t.longrun_every and it % t.longrun_every == 0 \
                        and it < t.iterations:
                    self.long_run_check()
        except KeyboardInterrupt:
            # (several processes: torchrun stops them all; no collective checkpoint then)
            if not self.dist.enabled and self._last_ckpt != self.iteration \
                    and not self.monitor.suspicious():
                self.checkpoint()
            raise
        finally:
            progress.close()
        if self.iteration < t.iterations:
            if self._last_ckpt != self.iteration:
                self._checkpoint_if_healthy()
            return {}
        if not main:  # rank 0 evaluates, plots and writes the summary
            return {}
        return self.finish()

    def _checkpoint_if_healthy(self) -> None:
        if self.cfg.train.divergence_check and self.monitor.suspicious():
            self.log(f"iteration {self.iteration}: learning looks unstable, checkpoint skipped "
                     "(the last good one is kept)")
            return
        self.checkpoint()

    def _last_good(self) -> str:
        try:
            _, folder = load_checkpoint(self.out)
        except CheckpointError:
            return "no checkpoint was written yet"
        return f"last good checkpoint: {folder}"

    def _on_failure(self, error: TrainingError) -> None:
        """Roll back to the last good checkpoint with a lower learning rate, or stop with
        one line naming the iteration, the cause, the last good checkpoint and what to try."""
        t = self.cfg.train
        if t.on_failure == "rollback" and self.rollbacks < t.max_rollbacks:
            try:
                state, folder = load_checkpoint(self.out)
            except CheckpointError:
                state = None
            if state is not None:
                rollbacks, sessions = self.rollbacks + 1, self.sessions
                # lowered from the current factor, not the checkpoint's: a second rollback
                # to the same checkpoint (none written in between) must not replay the
                # first one's steps at the same rate
                lowered = self.lr_factor * t.rollback_lr_factor
                self.load_state(state)
                self.rollbacks, self.sessions = rollbacks, sessions
                self.lr_factor = lowered
                self.monitor.reset()
                if self.dist.is_main:
                    _truncate_log(self.out / METRICS_FILE, self.iteration)
                self.log(f"{error}: rolled back to {folder.name}, learning-rate factor "
                         f"{self.lr_factor:g} (rollback {self.rollbacks}/{t.max_rollbacks})")
                return
        tried = f" after {self.rollbacks} rollback(s)" if self.rollbacks else ""
        raise TrainingError(
            f"{error}{tried}; {self._last_good()}; try a smaller samplers.negatives.step_size "
            "or train.lr, method.energy_penalty > 0, or model.spectral_norm = true") from None

    def _log_metrics(self, record: dict[str, Any]) -> None:
        with open(self.out / METRICS_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")
        self._tb_scalars("", record)

    # -- TensorBoard (train.tensorboard) --------------------------------------------------
    def _tb_writer(self) -> Any:
        """The run's SummaryWriter, or ``None`` when TensorBoard is off. After a resume or
        a rollback to iteration T it is reopened with ``purge_step = T + 1``: the steps
        logged after the checkpoint are hidden, so no step appears twice."""
        if not self.cfg.train.tensorboard:
            return None
        if self._tb is None or self._tb_purge is not None:
            from torch.utils.tensorboard import SummaryWriter

            if self._tb is not None:
                self._tb.close()
            self._tb = SummaryWriter(str(self.out / "tensorboard"), purge_step=self._tb_purge)
            self._tb_purge = None
        return self._tb

    def _tb_scalars(self, prefix: str, values: Mapping[str, Any]) -> None:
        """Every finite number of ``values`` (nested mappings flattened with ``/``)."""
        tb = self._tb_writer()
        if tb is None:
            return
        for k, v in values.items():
            if isinstance(v, Mapping):
                self._tb_scalars(f"{prefix}{k}/", v)
            elif (isinstance(v, (int, float)) and not isinstance(v, bool) and k != "iteration"
                  and math.isfinite(v)):
                tb.add_scalar(f"{prefix}{k}", v, self.iteration)

    def _tb_figures(self, paths: list[Path]) -> None:
        """The run's figures as TensorBoard images at this iteration."""
        tb = self._tb_writer()
        if tb is None:
            return
        from matplotlib.image import imread

        for path in paths:
            if path.suffix == ".png" and path.exists():
                tb.add_image(f"figures/{path.stem}", imread(path)[..., :3], self.iteration,
                             dataformats="HWC")

    # -- evaluation, plots, long-run check ------------------------------------------------
    def evaluate(self, quality_samples: int | None = None) -> dict[str, Any]:
        """Every exact number the model allows (kept as ``last_evaluation`` for figures);
        image data: FID / KID of ``quality_samples`` model samples (default
        ``train.quality_samples``)."""
        from ebmlab.evaluators import evaluate

        self.last_evaluation = evaluate(self, quality_samples)
        return self.last_evaluation
    def _quality_due(self) -> bool:
        t = self.cfg.train
        return (self.data.image_shape is not None and t.quality_samples > 0
                and t.quality_checkpoints)

    def quality(self) -> dict[str, Any]:
        """FID / KID of the method's samples now (image data; see
        :func:`ebmlab.evaluators.image_quality`)."""
        from ebmlab.evaluators import image_quality

        return image_quality(self)

    def log_quality(self, result: Mapping[str, Any]) -> None:
        """Append the numbers of an :meth:`quality` result to ``metrics.jsonl`` (and
        TensorBoard) as their own record at this iteration."""
        keys = ("fid", "kid", "kid_sd", "quality_samples", "quality_seconds")
        record = {k: result[k] for k in keys if k in result}
        if "quality_error" in result:
            self.log(f"iteration {self.iteration}: FID/KID skipped: {result['quality_error']}")
        if record:
            self._log_metrics({"iteration": self.iteration, **record})

    def long_run_check(self) -> dict[str, Any]:
        from ebmlab.evaluators import long_run_check

        record = long_run_check(self)
        with open(self.out / LONGRUN_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")
        self._tb_scalars("longrun/", {k: v for k, v in record.items() if k != "steps"})
        return record

    def plots(self) -> list[Path]:
        from ebmlab.plot_run import plot_run

        written = plot_run(self.out, self)
        self._tb_figures([*written, *sorted(self.out.glob("longrun_*.png"))])
        return written

    def finish(self) -> dict[str, Any]:
        evaluation = self.evaluate()
        self._tb_scalars("eval/", evaluation)
        if self.data.image_shape is not None and self.cfg.train.quality_samples > 0:
            self.log_quality(evaluation)  # the last point of the FID / KID curve
        longrun = self.long_run_check()
        self.plots()
        target = self.method.target()
        unsettled = self.monitor.unsettled() if self.cfg.train.divergence_check else None
        summary = {**evaluation, "seconds": round(self.seconds, 2), "longrun": longrun,
                   "method": self.method.name,
                   "sampler": repr(target.sampler) if target is not None else None,
                   "rollbacks": self.rollbacks, "unsettled": unsettled,
                   "provenance": self.sessions[-1] if self.sessions else None,
                   "sessions": self.sessions}
        (self.out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        failed = [f"{origin}: {v['error']}" for origin, v in longrun.items()
                  if isinstance(v, Mapping) and "error" in v]
        if unsettled:
            raise TrainingError(f"iteration {self.iteration}: learning did not settle: "
                                f"{unsettled}; the model is saved but unreliable (summary in "
                                f"{self.out / SUMMARY_FILE}); try a smaller "
                                "samplers.negatives.step_size or train.lr")
        if failed:
            raise TrainingError(f"iteration {self.iteration}: long-run chains of the trained "
                                f"model failed ({failed[0]}): it is not a stable density; "
                                f"summary in {self.out / SUMMARY_FILE}")
        return summary


# -- progress ---------------------------------------------------------------------------------


class _Progress:
    """A tqdm bar on a terminal; otherwise a line every 5 % (batch jobs see progress)."""

    KEYS = ("loss_energy", "d_st", "r_t", "accept", "loss_generator", "loss_vae")

    def __init__(self, total: int, initial: int, enabled: bool,
                 log: Callable[[str], None]) -> None:
        self.bar, self.total, self.log = None, total, log
        self.every = max(1, total // 20) if enabled else 0
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, dynamic_ncols=True, leave=False,
                            desc="train")
            self.every = 0

    def _shown(self, metrics: dict[str, float]) -> str:
        return " ".join(f"{k}={metrics[k]:.3g}" for k in self.KEYS if k in metrics)

    def update(self, iteration: int, metrics: dict[str, float], seconds: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if iteration % 10 == 0:
                self.bar.set_postfix_str(self._shown(metrics), refresh=False)
        elif self.every and (iteration % self.every == 0 or iteration == self.total):
            self.log(f"train: {iteration}/{self.total} ({100 * iteration / self.total:.0f}%) "
                     f"{self._shown(metrics)} [{seconds:.0f} s]")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# -- entry points -------------------------------------------------------------------------------


def _is_failed_start(out: Path) -> bool:
    """A folder left by a run that stopped before its first checkpoint: only run files."""
    entries = {p.name for p in out.iterdir()}
    return CONFIG_FILE in entries and entries <= {*RUN_FILES, "checkpoints", "tensorboard"} \
        and not any((out / "checkpoints").glob("ckpt-*"))


def write_config(trainer: Trainer) -> None:
    """``config.toml``: the resolved config under a header naming what wrote it."""
    text = provenance_header(trainer.sessions) + dump_toml(trainer.cfg)
    (trainer.out / CONFIG_FILE).write_text(text, encoding="utf-8")


def start_run(cfg: RunConfig, out: Path, command: Sequence[str] | None = None,
              dist: Dist = SINGLE) -> Trainer:
    """A new run in ``out``, which must not exist yet, be empty, or hold only what a run
    that failed before its first checkpoint left (that is cleared). ``command`` is the
    command line recorded with the run (default ``sys.argv``). With several processes
    every rank checks and builds, rank 0 alone writes."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not _is_failed_start(out))):
        raise ConfigError(f"run directory {out} already exists; use --resume {out} to continue "
                          "it, or choose another --out")
    if cfg.train.tensorboard:
        try:
            import torch.utils.tensorboard  # noqa: F401
        except ImportError:
            raise ConfigError("train.tensorboard = true needs the tensorboard package "
                              "(pip install tensorboard)") from None
    # Builds and validates everything before writing anything (with several processes the
    # parameter broadcast inside also makes every rank finish its check above first).
    trainer = Trainer(cfg, out, dist=dist)
    if dist.is_main:
        if out.exists():
            import shutil

            for p in out.iterdir():
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        out.mkdir(parents=True, exist_ok=True)
    trainer.sessions = [{**provenance(command), "from_iteration": 0}]
    if dist.is_main:
        write_config(trainer)
    barrier(dist)
    return trainer


def load_newest_checkpoint(out: Path, log: Callable[[str], None] = _stderr
                           ) -> tuple[dict[str, Any], Path]:
    """The newest loadable checkpoint; a damaged newer one is reported with a warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            state, folder = load_checkpoint(out)
        except CheckpointError as e:
            if not (out / "checkpoints").is_dir() or not any((out / "checkpoints").glob("ckpt-*")):
                raise ConfigError(f"{out} has no checkpoint: the run stopped before its first "
                                  f"one; start it again with --out {out}") from None
            raise ConfigError(f"{out}: {e}") from None
    for w in caught:
        log(f"warning: {w.message}")
    return state, folder


def resume_run(cfg: RunConfig, out: Path, command: Sequence[str] | None = None,
               dist: Dist = SINGLE) -> Trainer:
    """Continue the run in ``out`` from its newest good checkpoint. ``cfg`` may differ from
    the saved config only in :data:`ebmlab.experiment.RESUME_SAFE` keys; ``command`` as for
    :func:`start_run`."""
    from ebmlab.experiment import check_resume_changes
    from ebmlab.run import load_run_config

    check_resume_changes(load_run_config(out, []), cfg)
    state, _ = load_newest_checkpoint(out, log=_stderr if dist.is_main else _quiet)
    trainer = Trainer(cfg, out, dist=dist)
    trainer.load_state(state)
    trainer.sessions.append({**provenance(command), "from_iteration": trainer.iteration})
    barrier(dist)  # every rank has read the checkpoint before rank 0 touches the run files
    if dist.is_main:
        _truncate_log(out / METRICS_FILE, trainer.iteration)
        _truncate_log(out / LONGRUN_FILE, trainer.iteration)
        write_config(trainer)
    return trainer


def _truncate_log(path: Path, iteration: int) -> None:
    """Drop records written after ``iteration`` (they will be written again)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["iteration"] <= iteration:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # a line cut by a kill
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(k + "\n" for k in kept))
    tmp.replace(path)
