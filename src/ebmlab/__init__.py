"""ebmlab: energy-based models ``p(x) = exp(−U(x))/Z`` with MCMC and amortized samplers.

Subpackages: :mod:`ebmlab.energies`, :mod:`ebmlab.samplers`, :mod:`ebmlab.chains`,
:mod:`ebmlab.diagnostics`, :mod:`ebmlab.data`, :mod:`ebmlab.evaluate`, :mod:`ebmlab.plots`.
``ebmlab.load_run(path)`` reads a run back; ``ebmlab.set_threads(n)`` /
``ebmlab.num_threads(n)`` choose torch's CPU threads (importing ebmlab imports no torch and
changes nothing).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ebmlab")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"


def set_threads(n):  # noqa: ANN001, ANN201 - lazy wrapper, see ebmlab.threads.set_threads
    """Use ``n`` CPU threads in torch from now on; returns the previous count (see
    :mod:`ebmlab.threads`: importing ebmlab never changes torch's threads)."""
    from ebmlab.threads import set_threads as _set_threads

    return _set_threads(n)


def num_threads(n):  # noqa: ANN001, ANN201 - lazy wrapper, see ebmlab.threads.num_threads
    """Context manager: ``n`` CPU threads in torch for a block (see :mod:`ebmlab.threads`)."""
    from ebmlab.threads import num_threads as _num_threads

    return _num_threads(n)


def load_run(path):  # noqa: ANN001, ANN201 - thin lazy wrapper, see ebmlab.run.load_run
    """Load a run directory written by ``ebmlab train`` (see :func:`ebmlab.run.load_run`)."""
    from ebmlab.run import load_run as _load_run

    return _load_run(path)
