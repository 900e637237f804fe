"""Seeds: draw one when the config has none, and seed the generators the run can use.

Only libraries that are installed are seeded, and none is imported just for seeding: a library
already imported is seeded now; one imported later during the run is seeded right after its
import (a post-import hook), so ``import torch`` inside the stage still gets the run's seed.
pycrumbs reseeds on every call even without a seed parameter; runlock seeds only when the
stage has a seed field (or seed option).
"""

from __future__ import annotations

import importlib.util
import random
import sys
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

MAX_SEED = 2**31 - 1


def draw_seed() -> int:
    """A fresh seed in [0, 2**31 - 1] (valid for random, NumPy, PyTorch and TensorFlow)."""
    # os.urandom, like the secrets module (whose import pulls in hmac and hashlib: ~4 ms)
    return random.SystemRandom().randrange(MAX_SEED)


def _seed_numpy(mod: ModuleType, seed: int) -> None:
    mod.random.seed(seed % 2**32)


def _seed_torch(mod: ModuleType, seed: int) -> None:
    mod.manual_seed(seed)  # also seeds every CUDA device in current PyTorch


def _seed_tensorflow(mod: ModuleType, seed: int) -> None:
    mod.random.set_seed(seed)


SEEDERS: dict[str, Callable[[ModuleType, int], None]] = {
    "numpy": _seed_numpy,
    "torch": _seed_torch,
    "tensorflow": _seed_tensorflow,
}


class _SeedAfterImport:
    """Seeds a library right after its first import during a run.

    A meta path finder by protocol (``find_spec``), not by subclassing ``importlib.abc``: that
    module imports importlib.resources and tempfile, ~8 ms of every fresh run.
    """

    def __init__(self, seed: int, names: Sequence[str]) -> None:
        self.seed = seed
        self.pending = set(names)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in self.pending:
            return None
        self.pending.discard(fullname)
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                # duck-typed Loader (see the class docstring)
                spec.loader = _SeedingLoader(spec.loader, self.seed, fullname)  # type: ignore[assignment]
                return spec
        return None


class _SeedingLoader:
    """Wraps a library's loader: its ``exec_module``, then the seeding."""

    def __init__(self, inner: Any, seed: int, name: str) -> None:
        self.inner = inner
        self.seed = seed
        self.name = name

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        create = getattr(self.inner, "create_module", None)
        return create(spec) if create else None

    def exec_module(self, module: ModuleType) -> None:
        self.inner.exec_module(module)
        try:
            SEEDERS[self.name](module, self.seed)
        except Exception:  # noqa: BLE001 - a partially importable library is not our failure
            pass

    def __getattr__(self, item: str) -> Any:  # get_resource_reader, is_package, ...
        return getattr(self.inner, item)


_hook: _SeedAfterImport | None = None


def apply_seed(seed: int, skip: Sequence[str] = ()) -> list[str]:
    """Seed ``random`` and every installed library of SEEDERS; return the names seeded now.

    Libraries not yet imported are seeded when (if) the run imports them; those in ``skip``
    (pycrumbs' ``seed_numpy=False`` ...) never are.
    """
    global _hook
    random.seed(seed)
    seeded = ["random"]
    later = []
    for name, seeder in SEEDERS.items():
        if name in skip:
            continue
        mod = sys.modules.get(name)
        if mod is not None:
            try:
                seeder(mod, seed)
                seeded.append(name)
            except Exception:  # noqa: BLE001
                pass
        elif importlib.util.find_spec(name) is not None:
            later.append(name)
    remove_hook()
    if later:
        _hook = _SeedAfterImport(seed, later)
        sys.meta_path.insert(0, _hook)
    return seeded


def remove_hook() -> None:
    """Stop seeding libraries imported from now on (end of the run)."""
    global _hook
    if _hook is not None:
        try:
            sys.meta_path.remove(_hook)
        except ValueError:
            pass
        _hook = None
