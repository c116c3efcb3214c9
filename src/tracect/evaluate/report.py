"""The evaluation report: one self-contained HTML page that a clinician or reviewer reads offline.

The page shows metrics.json as tables (aggregate figures with 95% confidence intervals, one row per
case, and every section it has no special layout for as nested tables), per-organ plots drawn with
matplotlib, and a slice viewer per case (:mod:`tracect.evaluate.viewer`): axial slices of the generated
CT beside the reference with a mask overlay that can be switched off, and coronal and sagittal reformats. Plots, slices, style and
script are all inlined (PNG as base64 ``data:`` URIs), so the file opens from ``file://`` with no
network.

A value that could not be computed (None or NaN) is shown as "n/a" with its reason, never as 0. The
reason is looked up beside the value: a ``reasons`` mapping, a ``<key>_reason`` entry, a note that names
the key ("flow_epe_px: ...", "spleen: ..."), else the ``notes``/``note`` of the section that holds it.
Every Fréchet distance (keys with "frechet", "fid" or "fd") carries the name of its feature extractor:
without Inception weights it is computed on the segmenter's encoder and is not comparable with a
published FID.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from tracect.evaluate.viewer import VIEWER_JS, VIEWER_NOTE, ViewerCase, case_viewer, label_colours
from tracect.generate.outputs import DISPLAY_WINDOW
from tracect.utils.atomic import write_text

__all__ = ["ViewerCase", "write_report"]

FRECHET = re.compile(r"fr[eé]chet|(^|_)(fid|fd)($|_)", re.IGNORECASE)
STAT_KEYS = {"mean", "ci95", "n", "std", "median", "reason", "notes"}
# Keys with a place of their own; any other key is still shown, in a generic table.
TOP_LEVEL = {"tracect_version", "created", "settings", "feature_extractor", "segmenter", "cases", "aggregate",
             "notes"}
CASE_COLUMNS = ("case", "generated", "mask", "reference", "report", "dice", "dice_reference", "hd95_mm", "flow_epe_px",
                "warp_error", "warp_error_reference", "ssim_profile", "ssim_profile_reference", "hu")
HU_KEYS = ("median", "iqr", "reference_median", "reference_iqr")
HU_TITLES = {"median": "HU median", "iqr": "HU IQR", "reference_median": "reference HU median",
             "reference_iqr": "reference HU IQR"}
# Per-case {organ: value} maps shown as columns of the case's organ table.
ORGAN_MAPS = {"dice": "Dice", "dice_reference": "Dice of the segmenter on the reference CT", "hd95_mm": "HD95 (mm)"}


def write_report(path: str | Path, metrics: dict, cases: list[ViewerCase], title: str = "tracect evaluation",
                 *, max_axial: int = 64, max_reformat: int = 32, max_size: int = 256) -> Path:
    """Write the report page to ``path`` and return it.

    ``metrics`` is the content of metrics.json; ``cases`` get one slice viewer each. To keep the file
    small, at most ``max_axial`` axial and ``max_reformat`` coronal/sagittal slices per case are
    embedded (evenly spaced) and slices are shrunk to at most ``max_size`` pixels a side; the page
    says where that happened.
    """
    page = _Page(metrics)
    colours = label_colours(cases)
    viewers = [case_viewer(c, i, colours, max_axial, max_reformat, max_size) for i, c in enumerate(cases)]
    body = "\n".join([
        f"<h1>{_e(title)}</h1>", page.header(), page.settings(), page.aggregate(), page.plots(),
        page.per_case(), page.other_sections(),
        '<h2 id="viewer">Slice viewer</h2>' + VIEWER_NOTE.format(lo=DISPLAY_WINDOW[0], hi=DISPLAY_WINDOW[1],
                                                                 level=sum(DISPLAY_WINDOW) / 2,
                                                                 width=DISPLAY_WINDOW[1] - DISPLAY_WINDOW[0]),
        *(viewers or ["<p>No volumes were given to the viewer.</p>"]),
        '<pre id="selftest" hidden></pre>'])
    doc = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n<title>{_e(title)}</title>\n'
           f"<style>{_CSS}</style></head>\n<body>\n{body}\n<script>{VIEWER_JS}</script>\n</body></html>\n")
    write_text(path, doc)
    return Path(path)


# ---------------------------------------------------------------------------------------------------
# Values and tables


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _dict(v: Any) -> dict:
    """``v`` if it is a mapping, else an empty one: a malformed section reads as absent."""
    return v if isinstance(v, dict) else {}


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and math.isnan(v))


def _fmt(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return ("∞" if v > 0 else "−∞") if math.isinf(v) else f"{v:.4g}"
    return str(v)


def _reason(key: Any, *containers: Any, fallback: bool = True) -> str | None:
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
        notes = _note_list(c)
        if isinstance(c.get("notes"), dict) and c["notes"].get(key):
            return str(c["notes"][key])
        hits = [n for n in notes if _explains(n, key)]
        if hits:
            return "; ".join(hits)
    for c in containers if fallback else ():
        if isinstance(c, dict) and key in c and _note_list(c):
            return "notes: " + "; ".join(_note_list(c))
    return None


def _none_given(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _none_given(x) for k, x in v.items()}
    return "not given" if v is None else v


def _note_list(c: dict) -> list[str]:
    notes = c.get("notes")
    out = [str(n) for n in notes if isinstance(n, str)] if isinstance(notes, list) else []
    return out + ([c["note"]] if isinstance(c.get("note"), str) and c["note"] else [])


def _explains(note: str, key: str) -> bool:
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


def _case_reason(key: str, c: dict, m: dict, *near: Any) -> str | None:
    """Why a per-case value is missing, looked up in ``near``, the case, then the whole of metrics.json;
    a figure that needs the real CT is explained by its absence."""
    found = _reason(key, *near, c, m, fallback=False)
    if found is None and "reference" in key and "reference" in c and _missing(c["reference"]):
        return "no reference CT for this case"
    return found or _reason(key, *near, c, m)


def _has_frechet(v: Any) -> bool:
    if isinstance(v, dict):
        return any(FRECHET.search(str(k)) or _has_frechet(x) for k, x in v.items())
    return isinstance(v, list) and any(_has_frechet(x) for x in v)


def _value(v: Any, reason: str | None = None) -> str:
    if _missing(v):
        return (f'<span class="na">n/a</span> <span class="reason">{_e(reason or "no reason recorded")}</span>')
    return _e(_fmt(v))


def _is_stat(d: Any) -> bool:
    return isinstance(d, dict) and "mean" in d and set(d) <= STAT_KEYS


def _ci(d: dict) -> str:
    ci = d.get("ci95")
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and not any(_missing(x) for x in ci):
        return f"{_fmt(ci[0])} – {_fmt(ci[1])}"
    return '<span class="na">n/a</span>'


def _stat_inline(d: dict, key: Any, *outer: Any) -> str:
    if _missing(d.get("mean")):
        return _value(None, d.get("reason") or _reason(key, d, *outer))
    n = f", n = {_fmt(d['n'])}" if "n" in d else ""
    return f"{_value(d['mean'])} <span class=\"ci\">(95% CI {_ci(d)}{n})</span>"


def _table(head: list[str], rows: list[list[str]], cls: str = "") -> str:
    th = "".join(f"<th>{h}</th>" for h in head)
    tr = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{tr}</tbody></table>'


def _notes(notes: Any) -> str:
    if isinstance(notes, list) and notes:
        return '<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>"
    return ""


class _Page:
    """The metric sections of the page; knows the feature extractor so every Fréchet value names it."""

    def __init__(self, metrics: dict):
        self.m = metrics if isinstance(metrics, dict) else {}
        fx = self.m.get("feature_extractor")
        self.fx = (fx.get("name") if isinstance(fx, dict) else fx) or "not recorded"

    def key(self, k: Any) -> str:
        label = _e(k)
        if FRECHET.search(str(k)):
            label += f' <span class="fx">features: {_e(self.fx)}</span>'
        return label

    def render(self, v: Any, key: Any = "", *outer: Any) -> str:
        """Any JSON value as HTML: dicts as key/value tables, lists of dicts as tables."""
        if isinstance(v, dict):
            if _is_stat(v):
                return _stat_inline(v, key, *outer)
            rows = [[self.key(k), self.render(x, k, v, *outer)] for k, x in v.items()
                    if k not in ("notes", "reasons") and not str(k).endswith("_reason")]
            return (_table(["", ""], rows, "kv") if rows else "") + _notes(v.get("notes"))
        if isinstance(v, (list, tuple)):
            if not v:
                return '<span class="na">(empty)</span>'
            if all(isinstance(x, dict) for x in v):
                cols = list(dict.fromkeys(k for x in v for k in x))
                return _table([self.key(c) for c in cols],
                              [[self.render(x.get(c), c, x, *outer) for c in cols] for x in v])
            if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v) and len(v) > 8:
                arr = np.asarray(v, float)
                ok = arr[~np.isnan(arr)]
                span = f"mean {_fmt(ok.mean())}, range {_fmt(ok.min())} – {_fmt(ok.max())}" if ok.size else "all n/a"
                return f"{len(v)} values: {span}"
            return ", ".join(self.render(x, key, *outer) for x in v)
        return _value(v, _reason(key, *outer))

    def header(self) -> str:
        m = self.m
        meta = [f"tracect {_e(m['tracect_version'])}" if "tracect_version" in m else "",
                f"created {_e(m['created'])}" if "created" in m else ""]
        fx = m.get("feature_extractor") if isinstance(m.get("feature_extractor"), dict) else {}
        note = f" — {_e(fx['note'])}" if fx.get("note") else ""
        banner = ""
        if "feature_extractor" in m or _has_frechet(m):
            standard = self.fx == "inception"
            banner = (f'<div class="banner{"" if standard else " warn"}"><b>Fréchet distances use features '
                      f'from: <span class="fx">{_e(self.fx)}</span></b>{note}'
                      + ("" if standard else "<br>They are <b>not</b> a standard FID (Inception features) and "
                         "must not be compared with FID values published elsewhere; they compare runs of this "
                         "evaluation only.") + "</div>")
        toc = " · ".join(f'<a href="#{a}">{t}</a>' for a, t in [
            ("settings", "Settings"), ("aggregate", "Aggregate"), ("plots", "Per-organ plots"),
            ("cases", "Per case"), ("other", "Other sections"), ("viewer", "Slice viewer")])
        return (f'<p class="meta">{" · ".join(x for x in meta if x)}</p>{banner}<nav>{toc}</nav>'
                + (f"<h2>Notes</h2>{_notes(m['notes'])}" if m.get("notes") else ""))

    def settings(self) -> str:
        # None in settings is an option left out, not a figure that failed
        out = '<h2 id="settings">Settings</h2>' + (self.render(_none_given(self.m["settings"]), "settings", self.m)
                                                   if "settings" in self.m else "<p>No settings recorded.</p>")
        if "segmenter" in self.m:
            out += "<h3>Segmenter</h3>" + self.render(self.m["segmenter"], "segmenter", self.m)
        return out

    def aggregate(self) -> str:
        agg = self.m.get("aggregate")
        if not isinstance(agg, dict):
            return f'<h2 id="aggregate">Aggregate</h2><p>{_value(None, _reason("aggregate", self.m))}</p>'
        rows, groups, nested, other = [], [], [], {}
        for k, v in agg.items():
            if k in ("notes", "reasons") or str(k).endswith("_reason"):
                continue
            if isinstance(v, dict) and not _is_stat(v) and v and all(_is_stat(x) for x in v.values()):
                groups.append((k, v))  # {organ: stat}
            elif isinstance(v, dict) and v and all(isinstance(x, dict) and x and not _is_stat(x)
                                                   and all(_is_stat(y) for y in x.values()) for x in v.values()):
                nested.append((k, v))  # {organ: {figure: stat}}
            elif _is_stat(v) or _missing(v):
                rows.append(self._stat_row(k, v if isinstance(v, dict) else {"mean": v}, agg))
            else:
                other[k] = v
        out = ('<h2 id="aggregate">Aggregate</h2><p>Means with a 95% confidence interval; n is the number of '
               "values (usually cases) each mean is taken over.</p>"
               + (_table(["metric", "mean", "95% CI", "n"], rows, "num") if rows else "") + _notes(agg.get("notes")))
        ref = _dict(_dict(self.m.get("segmenter")).get("reference_dice"))
        for k, v in groups:
            with_ref = k == "dice_per_organ" and isinstance(ref, dict) and ref
            rows = [self._stat_row(o, s, v, agg)[:4] + ([_value(ref.get(o), _reason(o, ref))] if with_ref else [])
                    for o, s in v.items()]
            head = ["organ", "mean", "95% CI", "n"] + (["segmenter on real CT"] if with_ref else [])
            out += f"<h3>{self.key(k)}</h3>" + _table(head, rows, "num")
        for k, v in nested:
            cols = list(dict.fromkeys(f for x in v.values() for f in x))
            rows = [[_e(o)] + [_stat_inline(x[f], f, x, v, agg) if f in x else "" for f in cols] for o, x in v.items()]
            out += f"<h3>{self.key(k)}</h3>" + _table(["organ", *map(self.key, cols)], rows, "num")
        return out + (self.render(other, "aggregate", self.m) if other else "")

    def _stat_row(self, k: Any, s: dict, *outer: Any) -> list[str]:
        mean = s.get("mean")
        n = _e(_fmt(s["n"])) if s.get("n") is not None else ""
        if _missing(mean):
            return [self.key(k), _value(None, s.get("reason") or _reason(k, s, *outer, self.m)), _ci(s), n]
        return [self.key(k), _value(mean), _ci(s), n]

    def plots(self) -> str:
        out = '<h2 id="plots">Per-organ plots</h2>'
        for title, (png, why) in [("Dice per organ", _dice_plot(self.m)),
                                  ("HU per organ, generated vs reference", _hu_plot(self.m.get("cases"))),
                                  ("Adjacent-slice SSIM along z", _ssim_plot(self.m.get("cases")))]:
            out += f"<h3>{title}</h3>" + (
                f'<img class="plot" alt="{_e(title)}" src="{png}"><p class="caption">{_e(why)}</p>' if png
                else f"<p>{_value(None, why)}</p>")
        return out

    def per_case(self) -> str:
        cases = self.m.get("cases")
        if not isinstance(cases, list) or not cases:
            return '<h2 id="cases">Per case</h2><p>No per-case results.</p>'
        head = ["case", "report", "mean Dice", "mean HD95 (mm)", "flow EPE (px)", "warp error",
                "warp error, reference", "mean SSIM", "mean SSIM, reference"]
        rows, details = [], []
        for c in (c for c in cases if isinstance(c, dict)):
            report = str(c.get("report") or "")
            short = _e(report[:90]) + ("…" if len(report) > 90 else "")  # the full text is in the details
            rows.append([_e(c.get("case", "?")), f'<span title="{_e(report)}">{short}</span>']
                        + [_value(*_mean_of(c.get(k), k, c, self.m)) for k in ("dice", "hd95_mm")]
                        + [_value(c.get(k), _case_reason(k, c, self.m))
                           for k in ("flow_epe_px", "warp_error", "warp_error_reference")]
                        + [_value(*_mean_of(c.get(k), k, c, self.m))
                           for k in ("ssim_profile", "ssim_profile_reference")])
            details.append(f"<details><summary>{_e(c.get('case', '?'))}</summary>{self._case_detail(c)}</details>")
        return ('<h2 id="cases">Per case</h2><p>Means are over organs (Dice, HD95) or over slice pairs (SSIM); '
                "n/a entries were not computed and say why.</p>" + _table(head, rows, "num cases") + "".join(details))

    def _case_detail(self, c: dict) -> str:
        """The full report, files, a per-organ table, and every other key of the case."""
        maps = [(k, t) for k, t in ORGAN_MAPS.items() if k in c]
        hu = {o: _dict(x) for o, x in _dict(c.get("hu")).items()}
        hu_cols = list(dict.fromkeys([*(HU_KEYS if hu else ()), *(f for x in hu.values() for f in x)]))
        organs = list(dict.fromkeys([*(o for k, _ in maps for o in _dict(c[k])), *hu]))
        no_ref = "reference" in c and _missing(c["reference"])

        def cell(d: dict, key: str) -> str:
            if key in d:
                return _value(d[key], _case_reason(key, c, self.m, d))
            return _value(None, "no reference CT for this case" if no_ref and "reference" in key
                          else "not reported for this organ")

        rows = [[_e(o)] + [cell(_dict(c[k]), o) for k, _ in maps] + [cell(hu.get(o, {}), f) for f in hu_cols]
                for o in organs]
        head = ["organ", *(t for _, t in maps), *(HU_TITLES.get(f, "HU " + f.replace("_", " ")) for f in hu_cols)]
        files = {k: c[k] if c[k] is not None else "none" for k in ("generated", "mask", "reference") if k in c}
        extra = {k: v for k, v in c.items() if k not in CASE_COLUMNS}
        return ((f"<p>Report: {_e(c['report'])}</p>" if c.get("report") else "") + self.render(files, "", c)
                + (_table(head, rows, "num") if rows else "") + (self.render(extra, "", c) if extra else ""))

    def other_sections(self) -> str:
        out = '<h2 id="other">Other sections</h2>'
        for k, v in self.m.items():
            if k not in TOP_LEVEL:
                out += f"<h3>{self.key(k)}</h3>" + self.render(v, k, self.m)
        return out


def _mean_of(d: Any, key: str, case: dict, m: dict) -> tuple[Any, str | None]:
    """Mean of the non-missing values of a dict or list, with the reason when there are none."""
    vals = list(d.values()) if isinstance(d, dict) else list(d) if isinstance(d, list) else []
    ok = [float(v) for v in vals if not _missing(v)]
    if ok:
        return float(np.mean(ok)), None
    if key not in case:
        return None, f"{key} not in metrics.json"
    return None, _case_reason(key, case, m) or ("every value n/a" if vals else None)


# ---------------------------------------------------------------------------------------------------
# Plots (matplotlib's object API: no pyplot, so no global figure state)


def _png(fig) -> str:
    buf = io.BytesIO()
    # No "Software" text chunk: it carries the matplotlib URL, and the page holds no addresses.
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(n_rows: int):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, max(2.2, 0.35 * n_rows + 1.0)))
    return fig, fig.add_subplot()


def _legend_above(ax) -> None:
    # Above the axes: inside, it would hide the bars of whichever organs it lands on.
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8, frameon=False)


def _num(v: Any) -> float:
    return float("nan") if _missing(v) else float(v)


def _dice_plot(m: dict) -> tuple[str | None, str]:
    per = {o: s if isinstance(s, dict) else {"mean": s}
           for o, s in _dict(_dict(m.get("aggregate")).get("dice_per_organ")).items()}
    ref = _dict(_dict(m.get("segmenter")).get("reference_dice"))
    from_cases = not per
    if from_cases:  # no aggregate: plain means over the cases, drawn without intervals
        cases = m.get("cases") if isinstance(m.get("cases"), list) else []
        dice = [c["dice"] for c in cases if isinstance(c, dict) and isinstance(c.get("dice"), dict)]
        for o in dict.fromkeys(o for d in dice for o in d):
            vals = [float(d[o]) for d in dice if not _missing(d.get(o))]
            per[o] = {"mean": float(np.mean(vals)) if vals else None}
    ref = {o: v for o, v in ref.items() if o != "mean"}  # the segmenter's own average is not an organ
    organs = list(dict.fromkeys([*per, *ref]))
    if not organs:
        return None, _reason("dice_per_organ", m.get("aggregate"), m) or "no Dice per organ in metrics.json"
    y = np.arange(len(organs))
    mean = np.array([_num(per.get(o, {}).get("mean")) for o in organs])
    ci = [per.get(o, {}).get("ci95") or [None, None] for o in organs]
    err = np.array([[mean[i] - _num(c[0]), _num(c[1]) - mean[i]] for i, c in enumerate(ci)]).T
    fig, ax = _figure(len(organs))
    h = 0.38 if ref else 0.7
    ax.barh(y - (h / 2 if ref else 0), np.nan_to_num(mean), h, xerr=None if from_cases else np.nan_to_num(err),
            capsize=3,
            color="#3b75af", label="generated CT (mean)" if from_cases else "generated CT (mean, 95% CI)")
    if ref:
        ax.barh(y + h / 2, [np.nan_to_num(_num(ref.get(o))) for o in organs], h, color="#9a9a9a",
                label="segmenter on the real CT of the same masks")
    for i, o in enumerate(organs):  # a missing value is written out, never drawn as a zero bar
        if math.isnan(mean[i]):
            ax.text(0.01, y[i] - (h / 2 if ref else 0), "n/a", va="center", fontsize=8, color="#a33")
        if ref and _missing(ref.get(o)):
            ax.text(0.01, y[i] + h / 2, "n/a", va="center", fontsize=8, color="#666")
    ax.set_yticks(y, organs)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("Dice (conditioning mask vs segmentation of the CT)")
    _legend_above(ax)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig), ("Bars: mean Dice over cases" + (" (no confidence intervals in metrics.json)" if from_cases
                                                       else " with 95% confidence intervals")
                       + ("; grey: the segmenter's Dice on real held-out CT, the best a generated CT can expect."
                          if ref else "; the segmenter's reference Dice on real CT was not recorded."))


def _hu_plot(cases: Any) -> tuple[str | None, str]:
    per: dict[str, list[tuple[float, float, float, float]]] = {}
    for c in cases if isinstance(cases, list) else []:
        for o, h in _dict(_dict(c).get("hu")).items():
            h = _dict(h)
            per.setdefault(o, []).append(tuple(_num(h.get(k)) for k in HU_KEYS))
    if not per:
        return None, "no per-organ HU in metrics.json"
    organs = list(per)
    y = np.arange(len(organs))
    fig, ax = _figure(len(organs))
    for j, (label, colour, off) in enumerate([("generated", "#3b75af", -0.2), ("reference", "#9a9a9a", 0.2)]):
        vals = [np.array(per[o])[:, 2 * j:2 * j + 2] for o in organs]  # (cases, [median, iqr])
        with np.errstate(all="ignore"):
            med = np.array([np.nanmean(v[:, 0]) if np.isfinite(v[:, 0]).any() else np.nan for v in vals])
            iqr = np.array([np.nanmean(v[:, 1]) if np.isfinite(v[:, 1]).any() else np.nan for v in vals])
        ok = np.isfinite(med)
        if not ok.any():
            continue
        ax.errorbar(med[ok], y[ok] + off, xerr=np.nan_to_num(iqr[ok]) / 2, fmt="o", color=colour, capsize=3,
                    label=f"{label} (mean of case medians ± half the IQR)")
        for i, v in enumerate(vals):
            ax.plot(v[:, 0], np.full(len(v), y[i] + off), "|", color=colour, alpha=0.6)
    ax.set_yticks(y, organs)
    ax.invert_yaxis()
    ax.set_xlabel("HU")
    _legend_above(ax)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig), ("Dots: the mean over cases of each organ's median HU, whiskers ± half the mean "
                       "interquartile range; ticks: single cases. Organs without reference HU show generated only.")


def _ssim_plot(cases: Any) -> tuple[str | None, str]:
    cases = [c for c in (cases if isinstance(cases, list) else []) if isinstance(c, dict) and c.get("ssim_profile")]
    if not cases:
        return None, "no SSIM profiles in metrics.json"
    from matplotlib import colormaps

    fig, ax = _figure(6)
    cmap = colormaps["tab10"]
    for i, c in enumerate(cases):
        col = cmap(i % 10)
        label = str(c.get("case", i)) if i < 10 else None  # a legend past ten cases is unreadable
        ax.plot([_num(v) for v in c["ssim_profile"]], color=col, lw=1.2, label=label)
        if c.get("ssim_profile_reference"):
            ax.plot([_num(v) for v in c["ssim_profile_reference"]], color=col, lw=1.0, ls="--")
    ax.set_xlabel("slice pair (k, k+1), k from the top of the volume")
    ax.set_ylabel("SSIM")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="solid: generated\ndashed: reference", title_fontsize=8, loc="upper left",
              bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _png(fig), ("SSIM between neighbouring axial slices along z; a dip marks a seam or a jump between "
                       "slices that the real CT does not have.")


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d1d1f;
  margin:24px auto;max-width:1400px;padding:0 16px}
h1{margin-bottom:4px}h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:36px}
nav{margin:12px 0}nav a{color:#2a5d9f}
table{border-collapse:collapse;margin:8px 0 12px}
td,th{border:1px solid #ddd;padding:3px 8px;vertical-align:top;text-align:left}
th{background:#f3f4f6}tbody tr:nth-child(even){background:#fafafa}
table.num td:not(:first-child){font-variant-numeric:tabular-nums}
table.kv>thead{display:none}table.kv>tbody>tr>td:first-child{font-weight:600;white-space:nowrap}
.na{color:#a33;font-style:italic}.reason{color:#666;font-size:12px}.ci{color:#555}
.meta{color:#555}.caption{color:#555;font-size:13px;max-width:900px}
.fx{display:inline-block;background:#fff3cd;border:1px solid #e0b84d;border-radius:4px;padding:0 5px;
  font-size:12px;font-weight:600}
.banner{border:1px solid #9bb8d8;background:#eef5fc;padding:10px 14px;border-radius:6px;margin:12px 0}
.banner.warn{border-color:#e0b84d;background:#fffaeb}
ul.notes{color:#444}details{margin:4px 0}summary{cursor:pointer;color:#2a5d9f}
img.plot{max-width:100%;border:1px solid #eee}
.viewer{border:1px solid #ccc;border-radius:6px;padding:8px 14px;margin:16px 0}
.views{display:flex;flex-wrap:wrap;gap:10px 36px;align-items:flex-start}.view{margin:10px 0}
.head input[type=range]{width:150px;vertical-align:middle}.pos{color:#555;font-variant-numeric:tabular-nums}
.panels{display:flex;gap:16px;flex-wrap:wrap}figure{margin:4px 0}figcaption{text-align:center;color:#555}
.stack{position:relative;background:#000}.stack img{position:absolute;left:0;top:0;width:100%;height:100%}
.stack img.ov{image-rendering:pixelated}.viewer.no-overlay img.ov{visibility:hidden}
.m{position:absolute;color:#ffd54a;font:bold 11px sans-serif;font-style:normal;text-shadow:0 0 2px #000}
.m.l{left:3px;top:50%}.m.r{right:3px;top:50%}.m.t{top:2px;left:50%}.m.b{bottom:2px;left:50%}
.sw{display:inline-block;width:11px;height:11px;margin:0 3px 0 10px;border:1px solid #888;vertical-align:-1px}
.noref{color:#a33}
"""
