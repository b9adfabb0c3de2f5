"""A finished (or interrupted) run, loaded for notebooks, scripts and the CLI.

    run = ebmlab.load_run("runs/8gaussians")
    run.energy      # the trained nn.Module, in standardised coordinates
    run.energy_x    # the same energy in data coordinates (what plots and KL use)
    run.sampler     # the run's sampler, ready for run.sampler.run(run.energy, x0, n)
    run.config      # the resolved RunConfig
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ebmlab.checkpoint import CheckpointError, load_checkpoint
from ebmlab.config import ConfigError, load_config, read_toml
from ebmlab.experiment import DataSpaceEnergy, RunConfig
from ebmlab.train import CONFIG_FILE, SUMMARY_FILE, Trainer


class Run:
    """A run directory with its trained state restored (via the trainer that made it)."""

    def __init__(self, path: str | Path, overrides: list[str] | None = None) -> None:
        self.path = Path(path)
        if not (self.path / CONFIG_FILE).is_file():
            raise ConfigError(f"{self.path} is not a run directory (no {CONFIG_FILE})")
        self.config: RunConfig = load_run_config(self.path, overrides or [])
        self.trainer = Trainer(self.config, self.path)
        try:
            state, self.checkpoint = load_checkpoint(self.path)
        except CheckpointError as e:
            raise ConfigError(str(e)) from None
        self.trainer.load_state(state)

    @property
    def energy(self) -> nn.Module:
        return self.trainer.energy

    @property
    def energy_x(self) -> DataSpaceEnergy:
        return self.trainer.data_space_energy()

    @property
    def sampler(self) -> Any:
        return self.trainer.method.sampler

    @property
    def iteration(self) -> int:
        return self.trainer.iteration

    def sample(self, n: int, n_steps: int | None = None, seed: int = 0) -> Tensor:
        """``n`` samples in data coordinates; see :meth:`draw`."""
        return self.draw(n, n_steps, seed)[0]

    def draw(self, n: int, n_steps: int | None = None, seed: int = 0) -> tuple[Tensor, str]:
        """``n`` samples in data coordinates and where they come from: the method's own
        generative process (short-run chains from its noise init, or its generator; an
        RBM's Gibbs chains otherwise), or with ``n_steps`` that many steps of the run's
        sampler from the method's chain start (noise, or the generator's samples)."""
        gen = torch.Generator(device=self.trainer.device).manual_seed(seed)
        method = self.trainer.method
        if n_steps is None:
            x, origin = self.trainer.model_samples(n, gen)
        else:
            x0 = method.noise_init(n, gen)
            start = "generator samples" if getattr(method, "generator", None) else "noise"
            origin = f"{n_steps} {self.sampler.name} steps from {start}"
            x = None if x0 is None else self.sampler.run(self.energy, x0, n_steps, generator=gen)
        if x is None:
            raise ValueError(f"method {method.name!r} has no noise initialisation or generator "
                             "to sample from")
        return self.trainer.data.to_data_space(x.detach()), origin

    def summary(self) -> dict[str, Any]:
        path = self.path / SUMMARY_FILE
        return json.loads(path.read_text()) if path.exists() else {}


def load_run_config(path: Path, overrides: list[str]) -> RunConfig:
    return load_config(RunConfig, base=read_toml(path / CONFIG_FILE), overrides=overrides)


def load_run(path: str | Path) -> Run:
    """Load a run directory written by ``ebmlab train``."""
    return Run(path)
