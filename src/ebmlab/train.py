"""The one training loop, for every method.

Each iteration: draw a data batch, ask the method for its losses, check them,
back-propagate, check the gradients, clip, step one optimiser per module. The
loop logs ``metrics.jsonl``, writes atomic checkpoints (models, optimisers,
chains, RNG state, iteration), plots periodically, runs the long-run check,
and ends with an exact evaluation for 2-D data.

All randomness of the loop comes from one ``torch.Generator`` saved in every
checkpoint, so ``--resume`` continues bit-identically on CPU. Plots and the
long-run check draw from generators derived from ``(seed, iteration)`` and
never disturb it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ebmlab.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ebmlab.config import ConfigError, dump_toml
from ebmlab.experiment import (
    Data,
    DataSpaceEnergy,
    RunConfig,
    build_energy,
    build_method,
    load_data,
)
from ebmlab.methods import Method
from ebmlab.samplers import NonFiniteError

METRICS_FILE = "metrics.jsonl"
LONGRUN_FILE = "longrun.jsonl"
CONFIG_FILE = "config.toml"
SUMMARY_FILE = "summary.json"


class TrainingError(RuntimeError):
    """Training stopped (non-finite values); the message names the iteration and the cause."""


@dataclass
class Trainer:
    """Builds everything from a config and trains into ``out``."""

    cfg: RunConfig
    out: Path
    log: Callable[[str], None] = print
    data: Data = field(init=False)
    energy: nn.Module = field(init=False)
    method: Method = field(init=False)
    optimizers: dict[str, torch.optim.Optimizer] = field(init=False)
    generator: torch.Generator = field(init=False)
    iteration: int = 0
    lr_factor: float = 1.0
    rollbacks: int = 0

    def __post_init__(self) -> None:
        t = self.cfg.train
        if t.threads:
            torch.set_num_threads(t.threads)
        try:
            self.device = torch.device(t.device)
            torch.empty(0, device=self.device)
        except (RuntimeError, AssertionError) as e:
            raise ConfigError(f"train.device {t.device!r} is not available: {e}") from None
        self.data = load_data(self.cfg.data)
        self.data.train = self.data.train.to(self.device)
        self.data.test = self.data.test.to(self.device)
        torch.manual_seed(t.seed)  # parameter initialisation
        self.energy = build_energy(self.cfg.model, self.data.dim).to(self.device)
        self.method = build_method(self.cfg, self.energy, self.data)
        self.optimizers = {name: self._optimizer(m) for name, m in self.method.modules().items()}
        self.generator = torch.Generator(device=self.device).manual_seed(t.seed)
        self._tb = None

    # -- pieces -------------------------------------------------------------------------
    def _optimizer(self, module: nn.Module) -> torch.optim.Optimizer:
        t = self.cfg.train
        if t.optimizer == "adam":
            return torch.optim.Adam(module.parameters(), lr=t.lr, betas=(t.beta1, t.beta2),
                                    weight_decay=t.weight_decay)
        return torch.optim.SGD(module.parameters(), lr=t.lr, weight_decay=t.weight_decay)

    def learning_rate(self, iteration: int, module: str = "energy") -> float:
        """The learning rate of ``module`` at ``iteration`` (``train.lr_generator`` for a
        generator when set)."""
        t = self.cfg.train
        base = t.lr_generator if module == "generator" and t.lr_generator is not None else t.lr
        lr = base * self.method.lr_scale() * self.lr_factor
        if t.lr_schedule == "cosine":
            lr *= 0.5 * (1 + math.cos(math.pi * iteration / t.iterations))
        return lr

    def state(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "lr_factor": self.lr_factor,
            "rollbacks": self.rollbacks,
            "modules": {k: m.state_dict() for k, m in self.method.modules().items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "method": self.method.state_dict(),
            "generator": self.generator.get_state(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        for k, m in self.method.modules().items():
            m.load_state_dict(state["modules"][k])
        for k, o in self.optimizers.items():
            saved = dict(state["optimizers"][k])
            # JSON turned the per-parameter state keys into strings; the optimiser wants ints.
            saved["state"] = {int(i): v for i, v in saved["state"].items()}
            o.load_state_dict(saved)
        self.method.load_state_dict(state["method"])
        self.generator.set_state(state["generator"])
        self.iteration = int(state["iteration"])
        self.lr_factor = float(state["lr_factor"])
        self.rollbacks = int(state["rollbacks"])

    def checkpoint(self) -> Path:
        return save_checkpoint(self.out, self.iteration, self.state())

    def data_space_energy(self) -> DataSpaceEnergy:
        return DataSpaceEnergy(self.energy, self.data.shift, self.data.scale).to(self.device)

    def side_generator(self, salt: int) -> torch.Generator:
        """Randomness for plots / checks, independent of the training stream."""
        seed = (self.cfg.train.seed * 1_000_003 + self.iteration * 7919 + salt) % (2**63)
        return torch.Generator(device=self.device).manual_seed(seed)

    def model_samples(self, n: int, generator: torch.Generator | None = None
                      ) -> tuple[Tensor | None, str]:
        """``n`` samples (standardised space) and their origin: a method's generator; else an
        RBM's own block-Gibbs chains (its exact conditionals beat any short run); else the
        method's short-run chains from noise."""
        if getattr(self.method, "generator", None) is not None:
            return self.method.sample(n, generator).detach(), "generator samples"
        if hasattr(self.energy, "gibbs"):
            with torch.no_grad():
                return self.energy.sample(n, n_steps=1000, generator=generator), \
                    "1000 block-Gibbs sweeps"
        x = self.method.sample(n, generator)
        if x is None:
            return None, "none"
        return x.detach(), f"short-run samples ({self.cfg.method.n_steps} steps from noise)"

    # -- one iteration --------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        it = self.iteration
        n = self.data.train.shape[0]
        idx = torch.randint(0, n, (self.cfg.train.batch_size,), generator=self.generator,
                            device=self.device)
        batch = self.data.train[idx]
        try:
            out = self.method.step(batch, self.generator)
        except NonFiniteError as e:
            raise TrainingError(f"iteration {it}: {e}") from None
        loss = sum(out.losses.values())
        assert isinstance(loss, Tensor)
        if not bool(torch.isfinite(loss)):
            bad = [k for k, v in out.losses.items() if not bool(torch.isfinite(v))]
            raise TrainingError(f"iteration {it}: non-finite loss ({', '.join(bad)})")
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norms, lrs = {}, {}
        for name, module in self.method.modules().items():
            params = [p for p in module.parameters() if p.grad is not None]
            norm = torch.nn.utils.clip_grad_norm_(
                params, self.cfg.train.grad_clip or float("inf"), error_if_nonfinite=False
            ) if params else torch.zeros(())
            if not bool(torch.isfinite(norm)):
                raise TrainingError(f"iteration {it}: non-finite gradient of the {name}")
            grad_norms[f"grad_norm_{name}"] = float(norm)
            opt = self.optimizers[name]
            lrs[name] = self.learning_rate(it, name)
            for group in opt.param_groups:
                group["lr"] = lrs[name]
            opt.step()
        self.iteration += 1
        metrics = {"loss": float(loss.detach()), **out.metrics, **grad_norms,
                   "lr": lrs["energy"]}
        if len(out.losses) > 1:  # the sum means little: log each, and each learning rate
            metrics.update({f"loss_{k}": float(v.detach()) for k, v in out.losses.items()})
            metrics.update({f"lr_{k}": v for k, v in lrs.items() if k != "energy"})
        for k, v in metrics.items():
            if not math.isfinite(v):
                raise TrainingError(f"iteration {it}: non-finite {k}")
        return metrics

    # -- the loop -------------------------------------------------------------------------
    def fit(self, until: int | None = None) -> dict[str, Any]:
        """Train up to ``train.iterations`` and return the final summary.

        ``until`` stops early (after a checkpoint) at that iteration, as a kill right
        after that checkpoint would; then nothing is evaluated and ``{}`` is returned.
        """
        t = self.cfg.train
        stop = t.iterations if until is None else min(until, t.iterations)
        progress = _progress(t.iterations, self.iteration, enabled=t.progress)
        started = time.perf_counter()
        try:
            while self.iteration < stop:
                try:
                    metrics = self.train_step()
                except TrainingError as e:
                    if t.on_nonfinite == "rollback" and self.rollbacks < t.max_rollbacks:
                        self._rollback(e)
                        continue
                    raise TrainingError(f"{e}; {self._last_good()}") from None
                it = self.iteration
                progress.update(1, metrics)
                if it % t.log_every == 0 or it == t.iterations:
                    self._log_metrics({"iteration": it, **metrics,
                                       "seconds": time.perf_counter() - started})
                if it % t.ckpt_every == 0 or it == t.iterations:
                    self.checkpoint()
                if t.plot_every and it % t.plot_every == 0 and it < t.iterations:
                    self.plots()
                if t.longrun_every and it % t.longrun_every == 0 and it < t.iterations:
                    self.long_run_check()
        finally:
            progress.close()
        if self.iteration < t.iterations:
            self.checkpoint()
            return {}
        return self.finish(time.perf_counter() - started)

    def _last_good(self) -> str:
        try:
            _, folder = load_checkpoint(self.out)
        except CheckpointError:
            return "no checkpoint was written yet"
        return f"last good checkpoint kept: {folder}"

    def _rollback(self, error: TrainingError) -> None:
        try:
            state, folder = load_checkpoint(self.out)
        except CheckpointError:
            raise TrainingError(f"{error}; no checkpoint to roll back to") from None
        self.load_state(state)
        self.rollbacks += 1
        self.lr_factor *= self.cfg.train.rollback_lr_factor
        self.log(f"{error}: rolled back to {folder.name}, learning-rate factor "
                 f"{self.lr_factor:g} (rollback {self.rollbacks}/{self.cfg.train.max_rollbacks})")

    def _log_metrics(self, record: dict[str, Any]) -> None:
        with open(self.out / METRICS_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.cfg.train.tensorboard:
            if self._tb is None:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.out / "tensorboard"))
            for k, v in record.items():
                if k != "iteration":
                    self._tb.add_scalar(k, v, record["iteration"])

    # -- evaluation, plots, long-run check --------------------------------------------------
    def evaluate(self) -> dict[str, Any]:
        """Exact numbers where the maths allows: for an energy with an exact
        ``log_partition()`` (the RBM) the exact ``log_z_exact`` and mean ``test_ll`` /
        ``train_ll`` (nats per example); for 2-D data log Z, test NLL and
        KL(p_data ‖ p_θ) by quadrature. All in data coordinates."""
        from ebmlab.evaluate.exact2d import kl_divergence, log_partition, nll

        result: dict[str, Any] = {"iteration": self.iteration}
        if hasattr(self.energy, "log_partition"):
            # Data coordinates: log p_x(x) = log p_z(z) − Σ log scale, log Z_x = log Z_z +
            # Σ log scale (the energy is learned on standardised z).
            jac = float(self.data.scale.double().log().sum())
            with torch.no_grad():
                log_z = float(self.energy.log_partition())

                def mean_ll(z: Tensor) -> float:
                    return float((-self.energy(z).double()).mean()) - log_z - jac

                result.update(log_z_exact=log_z + jac, test_ll=mean_ll(self.data.test),
                              train_ll=mean_ll(self.data.train[:10000]))
        if self.data.dim != 2 or self.data.bounds is None:
            with torch.no_grad():
                result["energy_test"] = float(self.energy(self.data.test).mean())
            return result
        energy = self.data_space_energy()
        part = log_partition(energy, self.data.bounds, warn=False)
        test = self.data.to_data_space(self.data.test)
        result.update(log_z=part.log_z, edge_mass=part.edge_mass,
                      nll=nll(energy, test, part))
        if self.data.log_density is not None:
            result["kl"] = kl_divergence(self.data.log_density, energy, self.data.bounds,
                                         warn=False)
        return result

    def long_run_check(self) -> dict[str, Any]:
        """Chains ``longrun_factor``× longer than in training, from data and from noise.

        Records per start the mean energy, MMD² to held-out data and, with a known
        data density, ``kde_kl`` = KL(p_data ‖ KDE of the samples); compare it with
        ``kde_kl_reference``, the same estimator on as many held-out data points
        (the KDE's smoothing bias): samples as good as data give the same number.
        """
        from ebmlab.evaluate.mmd import mmd2
        from ebmlab.evaluate.sample_quality import kde_kl

        steps = self.cfg.method.n_steps * self.cfg.train.longrun_factor
        n = min(1000, self.data.test.shape[0])
        gen = self.side_generator(1)
        record: dict[str, Any] = {"iteration": self.iteration, "steps": steps}
        has_density = self.data.log_density is not None and self.data.bounds is not None
        test = self.data.to_data_space(self.data.test[:n])
        if has_density:
            # The KDE's own smoothing bias: the same estimator on n held-out data points.
            record["kde_kl_reference"] = kde_kl(self.data.log_density, test.cpu(),
                                                self.data.bounds)
        starts = {"data": self.data.test[:n], "noise": self.method.noise_init(n, gen)}
        samples = {}
        for origin, x0 in starts.items():
            if x0 is None:
                continue
            try:
                x = self.method.sampler.run(self.energy, x0, steps, generator=gen)
            except NonFiniteError as e:
                record[origin] = {"error": str(e)}
                continue
            with torch.no_grad():
                entry = {"energy": float(self.energy(x).mean())}
            xd = self.data.to_data_space(x)
            entry["mmd2"] = mmd2(xd, test)
            if has_density:
                entry["kde_kl"] = kde_kl(self.data.log_density, xd.cpu(), self.data.bounds)
            record[origin] = entry
            samples[origin] = xd
        with open(self.out / LONGRUN_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.data.dim == 2:
            from ebmlab.plots import plot_density

            has_generator = getattr(self.method, "generator", None) is not None
            for origin, xd in samples.items():
                start = "generator samples" if origin == "noise" and has_generator else origin
                plot_density(self.data_space_energy(), self.out / f"longrun_{origin}.png",
                             bounds=self.data.bounds, samples=xd.cpu(),
                             title=f"long-run ({steps} steps) from {start}, "
                                   f"iteration {self.iteration}")
        return record

    def plots(self) -> None:
        from ebmlab.plot_run import plot_run

        plot_run(self.out, self)

    def finish(self, seconds: float) -> dict[str, Any]:
        evaluation = self.evaluate()
        longrun = self.long_run_check()
        self.plots()
        summary = {**evaluation, "seconds": round(seconds, 2), "longrun": longrun,
                   "method": self.method.name, "sampler": repr(self.method.sampler)}
        (self.out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        if self._tb is not None:
            self._tb.close()
        return summary


# -- progress ---------------------------------------------------------------------------------


class _progress:
    """A tqdm bar on stderr showing the key metrics (or nothing when disabled)."""

    KEYS = ("loss", "d_st", "r_t", "accept", "loss_generator")

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            # disable=None: no bar when stderr is not a terminal (logs, CI)
            self.bar = tqdm(total=total, initial=initial, dynamic_ncols=True, leave=False,
                            desc="train", disable=None)

    def update(self, n: int, metrics: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.update(n)
            if self.bar.n % 10 == 0:
                shown = {k: metrics[k] for k in self.KEYS if k in metrics}
                if "loss_energy" in metrics:  # several modules: their own losses, not the sum
                    shown["loss"] = metrics["loss_energy"]
                self.bar.set_postfix({k: f"{v:.3g}" for k, v in shown.items()}, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# -- entry points -------------------------------------------------------------------------------


def start_run(cfg: RunConfig, out: Path) -> Trainer:
    """A new run in ``out``, which must not exist yet (or be an empty folder)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"run directory {out} already exists; use --resume {out} to continue "
                          "it, or choose another --out")
    if cfg.train.tensorboard:
        try:
            import torch.utils.tensorboard  # noqa: F401
        except ImportError:
            raise ConfigError("train.tensorboard = true needs the tensorboard package "
                              "(pip install tensorboard)") from None
    trainer = Trainer(cfg, out)  # builds and validates everything before writing anything
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_FILE).write_text(dump_toml(cfg))
    return trainer


def resume_run(cfg: RunConfig, out: Path) -> Trainer:
    """Continue the run in ``out`` from its newest good checkpoint."""
    trainer = Trainer(cfg, out)
    state, _ = load_checkpoint(out)
    trainer.load_state(state)
    _truncate_log(out / METRICS_FILE, trainer.iteration)
    _truncate_log(out / LONGRUN_FILE, trainer.iteration)
    (out / CONFIG_FILE).write_text(dump_toml(cfg))
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
