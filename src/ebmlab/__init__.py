"""ebmlab: energy-based models ``p(x) = exp(−U(x))/Z`` with MCMC and amortized samplers.

Subpackages: :mod:`ebmlab.energies`, :mod:`ebmlab.samplers`, :mod:`ebmlab.chains`,
:mod:`ebmlab.diagnostics`, :mod:`ebmlab.data`, :mod:`ebmlab.evaluate`, :mod:`ebmlab.plots`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ebmlab")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"


def load_run(path):  # noqa: ANN001, ANN201 - thin lazy wrapper, see ebmlab.run.load_run
    """Load a run directory written by ``ebmlab train`` (see :func:`ebmlab.run.load_run`)."""
    from ebmlab.run import load_run as _load_run

    return _load_run(path)
