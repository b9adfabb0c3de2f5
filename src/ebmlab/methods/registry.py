"""Methods by name: each registers its options dataclass and a build function.

Adding a method is one file (its class, an options dataclass built with
:func:`ebmlab.config.option`, a ``build(ctx, options)`` function and a
:func:`register` call) and one import line in ``ebmlab.methods``. The config
loader validates ``[method]`` against the chosen method's options (unknown keys
are a one-line error naming them), ``[samplers.<role>]`` against its roles and
``[optim.<group>]`` against its groups.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ebmlab.config import option

if TYPE_CHECKING:
    from ebmlab.experiment import BuildContext
    from ebmlab.methods.base import Method


@dataclass
class MethodOptions:
    """Base of every method's ``[method]`` options: ``name`` selects the method."""

    name: str = option("cd", help="the learning method: cd, persistent, short_run, steincd, "
                       "steingan, coopnets, vals, ccoopnets, cvals, gebm, flow (see "
                       "ebmlab.methods.METHODS)")


@dataclass(frozen=True)
class MethodSpec:
    """A registered method.

    ``roles``: sampler roles with their defaults (``{"negatives": {"name": "langevin",
    "step_size": 0.005}}``); a role's ``[samplers.<role>]`` table overrides them.
    ``groups``: the parameter groups (``[optim.<group>]`` tables may tune each).
    ``sections``: extra model sections it reads (``"generator"``, ``"encoder"``).
    """

    name: str
    options: type
    build: Callable[[BuildContext, Any], Method]
    help: str
    roles: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    groups: tuple[str, ...] = ("energy",)
    sections: tuple[str, ...] = ()


METHODS: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    if spec.name in METHODS:
        raise ValueError(f"method {spec.name!r} is registered twice")
    if "name" not in {f for f in getattr(spec.options, "__dataclass_fields__", {})}:
        raise ValueError(f"options of method {spec.name!r} must derive from MethodOptions")
    METHODS[spec.name] = spec
    return spec


def method_spec(name: str) -> MethodSpec:
    from ebmlab.config import ConfigError, suggest

    if name not in METHODS:
        raise ConfigError(f"method.name must be one of {sorted(METHODS)}, got {name!r}"
                          f"{suggest(name, list(METHODS))}")
    return METHODS[name]
