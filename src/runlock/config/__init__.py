"""A stage's configuration: the dataclass schema, the plain path (no OmegaConf) and the OmegaConf
path (composition, overrides, interpolation)."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .schema import Schema

__all__ = ["ConfigOps", "config_ops"]


class ConfigOps(Protocol):
    """What the run lifecycle does with a config, on either path.

    Implemented by :mod:`runlock.config.plain` (a plain config: dataclass defaults, no OmegaConf
    import) and :mod:`runlock.config.omega` (a ``DictConfig``); :func:`config_ops` picks one
    per run. ``resolve`` returns a config of the same kind, so the choice holds for the run.
    """

    def resolve(self, cfg: Any, *, now: datetime, run_id: str, stage: str) -> Any:
        """A resolved copy (interpolations done once) that the run may write into."""
        ...

    def writable(self, cfg: Any) -> contextlib.AbstractContextManager[Any]:
        """A context in which keys of ``cfg`` may be set."""
        ...

    def unresolved(self, cfg: Any) -> dict[str, Any]:
        """The parameters as given (interpolations kept): the lock's ``function.parameters``."""
        ...

    def to_plain(self, cfg: Any) -> dict[str, Any]:
        """Resolved plain values: the lock's ``config`` section."""
        ...

    def to_yaml(self, cfg: Any) -> str:
        """The text of ``config.yaml``."""
        ...

    def to_argument(self, cfg: Any, schema: Schema) -> Any:
        """What the stage function receives: the dataclass instance or a dict of keyword args."""
        ...


def config_ops(cfg: object) -> ConfigOps:
    """The operations for ``cfg``: the plain path for a PlainConfig, OmegaConf otherwise."""
    from . import plain

    if isinstance(cfg, plain.PlainConfig):
        return plain
    from . import omega  # imports omegaconf (~75 ms): only for configs that need it

    return omega
