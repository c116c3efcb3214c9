"""Values and tables of the evaluation page: how a figure, a missing figure and its reason, a mean with
its interval and a table are written in HTML (:mod:`tracect.evaluate.report`)."""

from __future__ import annotations

import html
import math
import re
from typing import Any

import numpy as np

FRECHET = re.compile(r"fr[eé]chet|(^|_)(fid|fd)($|_)", re.IGNORECASE)
STAT_KEYS = {"mean", "ci95", "n", "std", "median", "reason", "notes"}
HU_KEYS = ("median", "iqr", "reference_median", "reference_iqr")


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def as_dict(v: Any) -> dict:
    """``v`` if it is a mapping, else an empty one: a malformed section reads as absent."""
    return v if isinstance(v, dict) else {}


def is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and math.isnan(v))


def fmt(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return ("∞" if v > 0 else "−∞") if math.isinf(v) else f"{v:.4g}"
    return str(v)


def reason_for(key: Any, *containers: Any, fallback: bool = True) -> str | None:
    """Why ``key`` has no value, looked up in the containers from the nearest outward: a ``reasons``
    mapping, a ``<key>_reason`` entry, or notes that name the key. Failing those, the notes of the
    container that holds ``key``, which are about its own figures."""
    key = str(key)
    for c in containers:
        if not isinstance(c, dict):
            continue
        if isinstance(c.get("reasons"), dict) and c["reasons"].get(key):
            return str(c["reasons"][key])
        if c.get(f"{key}_reason"):
            return str(c[f"{key}_reason"])
        notes = note_list(c)
        if isinstance(c.get("notes"), dict) and c["notes"].get(key):
            return str(c["notes"][key])
        hits = [n for n in notes if explains(n, key)]
        if hits:
            return "; ".join(hits)
    for c in containers if fallback else ():
        if isinstance(c, dict) and key in c and note_list(c):
            return "notes: " + "; ".join(note_list(c))
    return None


def none_given(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: none_given(x) for k, x in v.items()}
    return "not given" if v is None else v


def note_list(c: dict) -> list[str]:
    notes = c.get("notes")
    out = [str(n) for n in notes if isinstance(n, str)] if isinstance(notes, list) else []
    return out + ([c["note"]] if isinstance(c.get("note"), str) and c["note"] else [])


def explains(note: str, key: str) -> bool:
    """Whether a free-text note is about ``key``: it names an identifier-like key (``flow_epe_px``, also
    as "flow EPE") or starts a clause with it ("spleen: absent", "Dice/HD95: ..."). A plain word such as
    "reference" in passing is not enough."""
    note = note.lower()
    words = key.lower().split("_")
    forms = {key.lower(), " ".join(words)} | ({" ".join(words[:-1])} if words[-1] in ("px", "mm", "hu") else set())
    for form in filter(None, forms):
        at = re.search(rf"(?<![\w-]){re.escape(form)}(?![\w-])", note)
        if at and ("_" in form or " " in form or at.start() == 0 or note[at.end():at.end() + 1] == ":"):
            return True
    return False


def case_reason(key: str, c: dict, m: dict, *near: Any) -> str | None:
    """Why a per-case value is missing, looked up in ``near``, the case, then the whole of metrics.json;
    a figure that needs the real CT is explained by its absence."""
    found = reason_for(key, *near, c, m, fallback=False)
    if found is None and "reference" in key and "reference" in c and is_missing(c["reference"]):
        return "no reference CT for this case"
    return found or reason_for(key, *near, c, m)


def has_frechet(v: Any) -> bool:
    if isinstance(v, dict):
        return any(FRECHET.search(str(k)) or has_frechet(x) for k, x in v.items())
    return isinstance(v, list) and any(has_frechet(x) for x in v)


def value_cell(v: Any, reason: str | None = None) -> str:
    if is_missing(v):
        return (f'<span class="na">n/a</span> <span class="reason">{esc(reason or "no reason recorded")}</span>')
    return esc(fmt(v))


def is_stat(d: Any) -> bool:
    return isinstance(d, dict) and "mean" in d and set(d) <= STAT_KEYS


def ci_text(d: dict) -> str:
    ci = d.get("ci95")
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and not any(is_missing(x) for x in ci):
        return f"{fmt(ci[0])} – {fmt(ci[1])}"
    return '<span class="na">n/a</span>'


def stat_inline(d: dict, key: Any, *outer: Any) -> str:
    if is_missing(d.get("mean")):
        return value_cell(None, d.get("reason") or reason_for(key, d, *outer))
    n = f", n = {fmt(d['n'])}" if "n" in d else ""
    return f"{value_cell(d['mean'])} <span class=\"ci\">(95% CI {ci_text(d)}{n})</span>"


def table_html(head: list[str], rows: list[list[str]], cls: str = "") -> str:
    th = "".join(f"<th>{h}</th>" for h in head)
    tr = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{tr}</tbody></table>'


def notes_html(notes: Any) -> str:
    if isinstance(notes, list) and notes:
        return '<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>"
    return ""
