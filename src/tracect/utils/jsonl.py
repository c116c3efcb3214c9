"""JSON Lines input: one object per line, errors naming the file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator


def iter_jsonl(path: Path, error: type[Exception] = ValueError) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line; raises ``error`` for bad UTF-8, bad JSON or a
    line that is not an object."""
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise error(f"{Path(path).name}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise error(f"{Path(path).name}:{n}: invalid JSON ({e.msg})") from None
        except (ValueError, RecursionError) as e:  # over-long integers, absurd nesting
            raise error(f"{Path(path).name}:{n}: unusable JSON ({type(e).__name__}: {str(e)[:80]})") from None
        if not isinstance(obj, dict):
            raise error(f"{Path(path).name}:{n}: expected a JSON object")
        yield n, obj
