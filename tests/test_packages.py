"""The package inventory is the running interpreter's, read from .dist-info folders."""

from __future__ import annotations

import importlib.metadata as md

from runlock.capture.packages import inventory, normalize_name


def test_inventory_matches_importlib_metadata() -> None:
    versions, _ = inventory()
    expected: dict[str, str] = {}
    for dist in md.distributions():
        name = normalize_name(dist.metadata["Name"])
        expected.setdefault(name, dist.version)
    # every distribution importlib sees is found with the same version
    missing = {k: v for k, v in expected.items() if versions.get(k) != v}
    assert not missing
    assert list(versions) == sorted(versions)


def test_editable_install_is_marked_with_its_source() -> None:
    from pathlib import Path

    _, editable = inventory()
    assert "runlock" in editable
    assert (Path(editable["runlock"]) / "pyproject.toml").is_file()
