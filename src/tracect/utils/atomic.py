"""Atomic file writes: a reader (or a resumed run) never sees a half-written file."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``.

    The temporary name keeps ``path``'s suffixes (``x.tmp-abc.nii.gz``) so writers that choose a
    format by extension still work. On error the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} exists (use --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.tmp-", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# ``.{stem}.tmp-{8 random characters}{suffixes}``: the names tempfile.mkstemp/mkdtemp give above
_TEMPORARY = re.compile(r"\.(?P<stem>.+?)\.tmp-[a-z0-9_]{8}(?P<suffix>.*)")


def temporary_target(name: str) -> str | None:
    """The file name a temporary file of :func:`atomic_path` would have been renamed to, or ``None``.

    A killed process leaves its temporary file behind; a resumed run uses this to find and remove the
    ones that belong to its own outputs (and only those: other processes may be writing beside it).
    """
    m = _TEMPORARY.fullmatch(name)
    return m["stem"] + m["suffix"] if m else None


def write_bytes(path: str | Path, data: bytes, overwrite: bool = True) -> None:
    with atomic_path(path, overwrite) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str, overwrite: bool = True) -> None:
    write_bytes(path, text.encode("utf-8"), overwrite)


def write_json(path: str | Path, data: Any, overwrite: bool = True) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n", overwrite)
