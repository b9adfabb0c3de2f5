"""How many CPU threads torch uses for ebmlab's work, chosen explicitly.

torch starts with one intra-op thread per core. For the small models and batches of the
2-D toys and the samplers' chains, one thread is fastest, and several threads on a
machine that other processes keep busy are much slower: the README's tour took 61 s
instead of 2.3 s on a busy 2-core machine with torch's default. Importing ebmlab changes
nothing; choose the count yourself:

    import ebmlab
    ebmlab.set_threads(1)            # for the rest of the process (returns the old count)
    with ebmlab.num_threads(1):      # for one block; the previous count comes back after
        x = MALA(step_size=0.1).run(target, x0, 1000)

``ebmlab train`` trains with ``train.threads`` (default 1) inside the same context
manager, and the other commands use the run's setting for themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


def _check(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of threads must be an integer >= 1, got {n!r}")
    return n


def set_threads(n: int) -> int:
    """Use ``n`` intra-op CPU threads in torch from now on; returns the previous count."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(_check(n))
    return previous


@contextmanager
def num_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op CPU threads, then restore the previous count (also
    on an error). ``None`` or 0 leaves the count as it is (torch's default, or your own)."""
    if not n:
        yield
        return
    previous = set_threads(n)
    try:
        yield
    finally:
        import torch

        torch.set_num_threads(previous)


__all__ = ["num_threads", "set_threads"]
