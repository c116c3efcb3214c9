"""Paths named inside user files (manifests, dataset tables) stay inside their root.

A manifest or a dataset table is data, and data from elsewhere must not steer reads or writes to
arbitrary places: ``../../etc/passwd`` or ``/home/other/x.nii.gz`` in a shared JSONL file is refused
unless the user opts in to absolute paths.
"""

from __future__ import annotations

from pathlib import Path


class UnsafePathError(ValueError):
    """A path in a user file points outside its root (or is absolute without permission)."""


def resolve_inside(path: str | Path, root: str | Path, allow_absolute: bool = False) -> Path:
    """``path`` resolved against ``root``; refused if it leaves ``root``.

    Absolute paths are accepted only with ``allow_absolute``; relative ones must stay inside ``root``
    after ``..`` and symbolic links are resolved.
    """
    p = Path(path).expanduser() if allow_absolute else Path(path)
    root = Path(root).resolve()
    if p.is_absolute():
        if not allow_absolute:
            raise UnsafePathError(f"{path}: absolute paths are not allowed here (allow them explicitly)")
        return p.resolve()
    resolved = (root / p).resolve()
    if resolved != root and root not in resolved.parents:
        raise UnsafePathError(f"{path}: resolves to {resolved}, outside {root}")
    return resolved
