"""A finished (or interrupted) run, loaded for notebooks, scripts and the CLI.

    run = ebmlab.load_run("runs/8gaussians")
    run.energy        # the trained model's U(x) in YOUR data coordinates: p(x) ∝ exp(−U(x))
    run.sample(1000)  # model samples in your data coordinates (the method's own sampling);
                      # fresh ones on every call, run.sample(1000, seed=0) to repeat them
    run.method        # the method (its samplers, chains, networks), standardised coordinates
    run.config        # the resolved RunConfig
    run.summary       # summary.json as a dict ({} while unfinished)

Training happens on standardised data (``z = (x − shift)/scale``); that stays
internal: ``run.energy`` and ``run.sample`` speak the data's units.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ebmlab.config import ConfigError, load_config, read_toml
from ebmlab.experiment import DataSpaceEnergy, RunConfig
from ebmlab.methods import Method
from ebmlab.train import CONFIG_FILE, SUMMARY_FILE, Trainer, load_newest_checkpoint


class Run:
    """A run directory with its trained state restored (via the trainer that made it)."""

    def __init__(self, path: str | Path, overrides: list[str] | None = None) -> None:
        self.path = Path(path)
        if not (self.path / CONFIG_FILE).is_file():
            raise ConfigError(f"{self.path} is not a run directory (no {CONFIG_FILE})")
        self.config: RunConfig = load_run_config(self.path, overrides or [])
        self.trainer = Trainer(self.config, self.path, log=lambda message: None)
        state, self.checkpoint = load_newest_checkpoint(self.path)
        self.trainer.load_state(state, source=f"checkpoint {self.checkpoint}")

    @property
    def method(self) -> Method:
        return self.trainer.method

    @property
    def energy(self) -> DataSpaceEnergy:
        """``U(x)`` in the data's own coordinates: ``p(x) ∝ exp(−U(x))``."""
        return self.trainer.data_space_energy()

    energy_x = energy  # the name used before 0.2

    @property
    def iteration(self) -> int:
        return self.trainer.iteration

    @property
    def summary(self) -> dict[str, Any]:
        """``summary.json`` as a dict, read when asked (``{}`` while the run is unfinished)."""
        path = self.path / SUMMARY_FILE
        return json.loads(path.read_text()) if path.exists() else {}

    def sample(self, n: int, n_steps: int | None = None, seed: int | None = None) -> Tensor:
        """``n`` samples in data coordinates; see :meth:`draw`."""
        return self.draw(n, n_steps, seed)[0]

    def draw(self, n: int, n_steps: int | None = None,
             seed: int | None = None) -> tuple[Tensor, str]:
        """``n`` model samples in data coordinates and where they come from, as the method
        draws them (:meth:`ebmlab.methods.Method.sample`): its sampler from its chain start
        for its usual number of steps, or ``n_steps``.

        ``seed=None`` (default) draws fresh samples on every call from a seed taken from
        the operating system's entropy (kept in :attr:`last_seed`, so a draw can be
        repeated); an integer ``seed`` gives the same samples every time. Neither touches
        torch's global random state."""
        if seed is None:
            seed = secrets.randbits(63)
        self.last_seed: int = seed
        rng = torch.Generator(device=self.trainer.device).manual_seed(seed)
        x, origin = self.trainer.model_samples(n, rng, n_steps=n_steps)
        if x is None:
            raise ConfigError(f"method {self.method.name!r} cannot be sampled")
        return self.trainer.data.to_data_space(x), origin


def load_run_config(path: Path, overrides: list[str]) -> RunConfig:
    return load_config(RunConfig, base=read_toml(path / CONFIG_FILE), overrides=overrides)


def load_run(path: str | Path) -> Run:
    """Load a run directory written by ``ebmlab train``."""
    return Run(path)
