"""Multi-process training with ``torch.distributed`` (data parallel, one loop per process).

``torchrun --standalone --nproc_per_node=N -m ebmlab train ...`` (or ``ebmlab train
--nproc N``, which launches exactly that) runs the one training loop in N processes:

* every process builds the same model from the same seed, and rank 0's parameters are
  broadcast so they start identical;
* each rank draws its own share of ``train.batch_size`` with its own random stream
  (``train.seed + rank``) and keeps its own chains / replay buffer;
* after each rank back-propagates its losses, one all-reduce per iteration carries what
  the ranks must agree on before stepping (:func:`all_reduce_step`): whether a rank
  failed, the gradients of every parameter group, which parameters have a gradient, which
  groups had a loss, the losses; a second, asynchronous one averages the method's
  metrics while the optimisers step. The optimisers take the same step everywhere and
  the parameters stay identical;
* failures are collective: a non-finite value or sampler failure on any rank is shared
  before anyone steps, and the metrics the divergence monitor reads are averaged, so all
  ranks roll back or stop together and none waits forever;
* rank 0 alone logs, evaluates, plots and writes checkpoints; a checkpoint holds every
  rank's method state and random stream (gathered), and ``--resume`` needs the same
  number of processes.

Backends: gloo on CPU, NCCL on CUDA (each rank on ``cuda:<local rank>``). A single
process uses :data:`SINGLE`, for which every function here is a no-op.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Dist:
    """This process's place among the training processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = Dist()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str) -> Dist:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE``
    > 1), or return :data:`SINGLE`. ``device`` is the configured ``train.device``."""
    if not launched_by_torchrun():
        return SINGLE
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        cuda = device.startswith("cuda")
        if cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if cuda else "gloo")
    return Dist(rank, world, local)


def shutdown(d: Dist) -> None:
    if d.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def rank_device(d: Dist, device: str) -> str:
    """``cuda`` becomes ``cuda:<local rank>`` when several processes share a machine."""
    if d.enabled and device == "cuda":
        return f"cuda:{d.local_rank}"
    return device


def batch_share(d: Dist, batch_size: int) -> int:
    """This rank's share of the global batch (the shares add up to ``batch_size``)."""
    if batch_size < d.world_size:
        raise ValueError(f"train.batch_size = {batch_size} is smaller than the number of "
                         f"processes ({d.world_size})")
    return batch_size // d.world_size + (d.rank < batch_size % d.world_size)


def barrier(d: Dist) -> None:
    if d.enabled:
        import torch.distributed as dist

        dist.barrier()


def broadcast_modules(d: Dist, modules: Mapping[str, nn.Module]) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if not d.enabled:
        return
    import torch.distributed as dist

    with torch.no_grad():
        for name in sorted(modules):
            for t in [*modules[name].parameters(), *modules[name].buffers()]:
                dist.broadcast(t.data, src=0)


def broadcast_object(d: Dist, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not d.enabled:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(d: Dist, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (on every rank). Tensors travel on the CPU."""
    if not d.enabled:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * d.world_size
    dist.all_gather_object(out, _to_cpu(obj))
    return out


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


@dataclass
class SyncedStep:
    """What every rank knows after :func:`all_reduce_step` (the same on every rank)."""

    error: str | None
    present: list[str]
    losses: dict[str, float]
    _metrics: dict[str, float]
    _pending: tuple[Any, Tensor, list[str], int] | None = None

    def metrics(self) -> dict[str, float]:
        """The method's metrics averaged over the ranks (waits for their all-reduce, which
        runs while the optimisers step)."""
        if self._pending is not None:
            work, values, keys, world = self._pending
            work.wait()
            self._metrics = {k: v / world
                             for k, v in zip(keys, values.tolist(), strict=True)}
            self._pending = None
        return dict(self._metrics)


def _names_tag(names: Sequence[str]) -> float:
    """A small checksum of the metric names (< 2¹⁰, so that sums of it and of its square
    stay exact in float32 for up to 16 processes)."""
    return float(zlib.crc32("\0".join(sorted(names)).encode()) % 1024)


def all_reduce_step(d: Dist, groups: Mapping[str, Sequence[nn.Parameter]],
                    present: Sequence[str], losses: Mapping[str, float],
                    metrics: Mapping[str, float], error: str | None) -> SyncedStep:
    """One iteration's communication: one all-reduce (sum) of one flat buffer,

    ``[failed, t, t², n, n², group had a loss ×G, parameter has a gradient ×P, loss ×G,
    gradients]``,

    then, when no rank failed, an asynchronous all-reduce of the method's metrics
    (float64) that overlaps the optimiser step (:meth:`SyncedStep.metrics` waits for it).
    Every rank learns alike: the first failing rank's message (gathered only when one
    failed); the groups that had a loss on some rank; every gradient averaged over the
    ranks (a parameter keeps ``grad = None`` only if it has none on every rank; a missing
    gradient counts as zero in the mean); each group's loss averaged over the ranks that
    had it. ``t`` is a checksum of the metric names and ``n`` their number: the ranks agree
    iff ``W·Σt² = (Σt)²`` and ``W·Σn² = (Σn)²`` (zero variance), so a method that logs
    different names on different ranks is caught by every rank at once, before the
    metrics' all-reduce. A single process gets its own numbers back."""
    if not d.enabled:
        return SyncedStep(error, list(present), dict(losses), dict(metrics))
    import torch.distributed as dist

    params = [p for g in groups for p in groups[g]]
    ref = params[0] if params else torch.zeros(())
    keys = sorted(metrics) if error is None else []
    tag, count = _names_tag(keys), float(len(keys))
    head = ([float(error is not None), tag, tag * tag, count, count * count]
            + [float(g in present) for g in groups]
            + [float(p.grad is not None) for p in params]
            + [float(losses.get(g, 0.0)) for g in groups])
    grads = [p.grad.reshape(-1) if p.grad is not None and error is None
             else torch.zeros_like(p).reshape(-1) for p in params]
    buf = torch.cat([torch.tensor(head, dtype=ref.dtype, device=ref.device), *grads])
    dist.all_reduce(buf)
    n_groups, n_params, world = len(groups), len(params), d.world_size
    total = buf[:len(head)].tolist()
    if total[0] > 0:
        messages = gather_objects(d, error)
        rank, message = next((r, m) for r, m in enumerate(messages) if m is not None)
        return SyncedStep(f"{message} (process {rank} of {world})", [], {}, {})
    if round(world * total[2]) != round(total[1]) ** 2 \
            or round(world * total[4]) != round(total[3]) ** 2:
        raise RuntimeError("the processes report different metrics; a method must log the "
                           "same metric names on every rank")
    had_loss = total[5:5 + n_groups]
    has_grad = total[5 + n_groups:5 + n_groups + n_params]
    loss_sum = total[5 + n_groups + n_params:]
    offset = len(head)
    for i, p in enumerate(params):
        n = p.numel()
        if has_grad[i] > 0:
            p.grad = (buf[offset:offset + n] / world).view_as(p).clone()
        offset += n
    values = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64)
    if ref.device.type == "cuda":
        values = values.to(ref.device)
    work = dist.all_reduce(values, async_op=True)
    names = list(groups)
    return SyncedStep(
        None,
        [g for i, g in enumerate(names) if had_loss[i] > 0],
        {g: loss_sum[i] / had_loss[i] for i, g in enumerate(names) if had_loss[i] > 0},
        {}, (work, values, keys, world),
    )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(nproc: int, python_args: Sequence[str]) -> int:
    """Start N processes of ``python <python_args>`` (``ebmlab train --nproc N``: ``-m ebmlab
    train ...``) with the environment torchrun gives (``--standalone``: one machine, a free
    local port), wait, and stop the others soon after one fails. Returns the first non-zero
    exit code (rank 0's message is the one printed; the other ranks are quiet)."""
    import subprocess
    import sys
    import time

    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()),
               WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(nproc))
    env.setdefault("OMP_NUM_THREADS", "1")
    procs = [subprocess.Popen([sys.executable, *python_args],
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)})
             for r in range(nproc)]
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [c for c in codes if c not in (None, 0)]
            if failed or all(c == 0 for c in codes):
                break
            time.sleep(0.1)
        if failed:
            deadline = time.monotonic() + 10.0  # let the others report the shared failure
            while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
                time.sleep(0.1)
    except KeyboardInterrupt:
        failed = [130]
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
    return failed[0] if failed else 0
