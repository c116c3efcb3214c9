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

How values, missing values and tables are written: :mod:`tracect.evaluate.report_values`; the plots:
:mod:`tracect.evaluate.report_plots`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tracect.evaluate.report_plots import dice_plot, hu_plot, ssim_plot
from tracect.evaluate.report_values import (FRECHET, HU_KEYS, as_dict, case_reason, ci_text, esc, fmt, has_frechet,
                                            is_missing, is_stat, notes_html, reason_for, stat_inline, table_html,
                                            none_given, value_cell)
from tracect.evaluate.viewer import VIEWER_JS, VIEWER_NOTE, ViewerCase, case_viewer, label_colours
from tracect.generate.outputs import DISPLAY_WINDOW
from tracect.utils.atomic import write_text

__all__ = ["ViewerCase", "write_report"]

# Keys with a place of their own; any other key is still shown, in a generic table.
TOP_LEVEL = {"tracect_version", "created", "settings", "feature_extractor", "segmenter", "cases", "aggregate",
             "notes"}
CASE_COLUMNS = ("case", "generated", "mask", "reference", "report", "dice", "dice_reference", "hd95_mm", "flow_epe_px",
                "warp_error", "warp_error_reference", "ssim_profile", "ssim_profile_reference", "hu")
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
        f"<h1>{esc(title)}</h1>", page.header(), page.settings(), page.aggregate(), page.plots(),
        page.per_case(), page.other_sections(),
        '<h2 id="viewer">Slice viewer</h2>' + VIEWER_NOTE.format(lo=DISPLAY_WINDOW[0], hi=DISPLAY_WINDOW[1],
                                                                 level=sum(DISPLAY_WINDOW) / 2,
                                                                 width=DISPLAY_WINDOW[1] - DISPLAY_WINDOW[0]),
        *(viewers or ["<p>No volumes were given to the viewer.</p>"]),
        '<pre id="selftest" hidden></pre>'])
    doc = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n<title>{esc(title)}</title>\n'
           f"<style>{_CSS}</style></head>\n<body>\n{body}\n<script>{VIEWER_JS}</script>\n</body></html>\n")
    write_text(path, doc)
    return Path(path)


class _Page:
    """The metric sections of the page; knows the feature extractor so every Fréchet value names it."""

    def __init__(self, metrics: dict):
        self.m = metrics if isinstance(metrics, dict) else {}
        fx = self.m.get("feature_extractor")
        self.fx = (fx.get("name") if isinstance(fx, dict) else fx) or "not recorded"

    def key(self, k: Any) -> str:
        label = esc(k)
        if FRECHET.search(str(k)):
            label += f' <span class="fx">features: {esc(self.fx)}</span>'
        return label

    def render(self, v: Any, key: Any = "", *outer: Any) -> str:
        """Any JSON value as HTML: dicts as key/value tables, lists of dicts as tables."""
        if isinstance(v, dict):
            if is_stat(v):
                return stat_inline(v, key, *outer)
            rows = [[self.key(k), self.render(x, k, v, *outer)] for k, x in v.items()
                    if k not in ("notes", "reasons") and not str(k).endswith("_reason")]
            return (table_html(["", ""], rows, "kv") if rows else "") + notes_html(v.get("notes"))
        if isinstance(v, (list, tuple)):
            if not v:
                return '<span class="na">(empty)</span>'
            if all(isinstance(x, dict) for x in v):
                cols = list(dict.fromkeys(k for x in v for k in x))
                return table_html([self.key(c) for c in cols],
                              [[self.render(x.get(c), c, x, *outer) for c in cols] for x in v])
            if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v) and len(v) > 8:
                arr = np.asarray(v, float)
                ok = arr[~np.isnan(arr)]
                span = f"mean {fmt(ok.mean())}, range {fmt(ok.min())} – {fmt(ok.max())}" if ok.size else "all n/a"
                return f"{len(v)} values: {span}"
            return ", ".join(self.render(x, key, *outer) for x in v)
        return value_cell(v, reason_for(key, *outer))

    def header(self) -> str:
        m = self.m
        meta = [f"tracect {esc(m['tracect_version'])}" if "tracect_version" in m else "",
                f"created {esc(m['created'])}" if "created" in m else ""]
        fx = m.get("feature_extractor") if isinstance(m.get("feature_extractor"), dict) else {}
        note = f" — {esc(fx['note'])}" if fx.get("note") else ""
        banner = ""
        if "feature_extractor" in m or has_frechet(m):
            standard = self.fx == "inception"
            banner = (f'<div class="banner{"" if standard else " warn"}"><b>Fréchet distances use features '
                      f'from: <span class="fx">{esc(self.fx)}</span></b>{note}'
                      + ("" if standard else "<br>They are <b>not</b> a standard FID (Inception features) and "
                         "must not be compared with FID values published elsewhere; they compare runs of this "
                         "evaluation only.") + "</div>")
        toc = " · ".join(f'<a href="#{a}">{t}</a>' for a, t in [
            ("settings", "Settings"), ("aggregate", "Aggregate"), ("plots", "Per-organ plots"),
            ("cases", "Per case"), ("other", "Other sections"), ("viewer", "Slice viewer")])
        return (f'<p class="meta">{" · ".join(x for x in meta if x)}</p>{banner}<nav>{toc}</nav>'
                + (f"<h2>Notes</h2>{notes_html(m['notes'])}" if m.get("notes") else ""))

    def settings(self) -> str:
        # None in settings is an option left out, not a figure that failed
        out = '<h2 id="settings">Settings</h2>' + (self.render(none_given(self.m["settings"]), "settings", self.m)
                                                   if "settings" in self.m else "<p>No settings recorded.</p>")
        if "segmenter" in self.m:
            out += "<h3>Segmenter</h3>" + self.render(self.m["segmenter"], "segmenter", self.m)
        return out

    def aggregate(self) -> str:
        agg = self.m.get("aggregate")
        if not isinstance(agg, dict):
            return f'<h2 id="aggregate">Aggregate</h2><p>{value_cell(None, reason_for("aggregate", self.m))}</p>'
        rows, groups, nested, other = [], [], [], {}
        for k, v in agg.items():
            if k in ("notes", "reasons") or str(k).endswith("_reason"):
                continue
            if isinstance(v, dict) and not is_stat(v) and v and all(is_stat(x) for x in v.values()):
                groups.append((k, v))  # {organ: stat}
            elif isinstance(v, dict) and v and all(isinstance(x, dict) and x and not is_stat(x)
                                                   and all(is_stat(y) for y in x.values()) for x in v.values()):
                nested.append((k, v))  # {organ: {figure: stat}}
            elif is_stat(v) or is_missing(v):
                rows.append(self._stat_row(k, v if isinstance(v, dict) else {"mean": v}, agg))
            else:
                other[k] = v
        out = ('<h2 id="aggregate">Aggregate</h2><p>Means with a 95% confidence interval; n is the number of '
               "values (usually cases) each mean is taken over.</p>"
               + (table_html(["metric", "mean", "95% CI", "n"], rows, "num") if rows else "")
               + notes_html(agg.get("notes")))
        ref = as_dict(as_dict(self.m.get("segmenter")).get("reference_dice"))
        for k, v in groups:
            with_ref = k == "dice_per_organ" and isinstance(ref, dict) and ref
            rows = [self._stat_row(o, s, v, agg)[:4]
                    + ([value_cell(ref.get(o), reason_for(o, ref))] if with_ref else []) for o, s in v.items()]
            head = ["organ", "mean", "95% CI", "n"] + (["segmenter on real CT"] if with_ref else [])
            out += f"<h3>{self.key(k)}</h3>" + table_html(head, rows, "num")
        for k, v in nested:
            cols = list(dict.fromkeys(f for x in v.values() for f in x))
            rows = [[esc(o)] + [stat_inline(x[f], f, x, v, agg) if f in x else "" for f in cols] for o, x in v.items()]
            out += f"<h3>{self.key(k)}</h3>" + table_html(["organ", *map(self.key, cols)], rows, "num")
        return out + (self.render(other, "aggregate", self.m) if other else "")

    def _stat_row(self, k: Any, s: dict, *outer: Any) -> list[str]:
        mean = s.get("mean")
        n = esc(fmt(s["n"])) if s.get("n") is not None else ""
        if is_missing(mean):
            return [self.key(k), value_cell(None, s.get("reason") or reason_for(k, s, *outer, self.m)), ci_text(s), n]
        return [self.key(k), value_cell(mean), ci_text(s), n]

    def plots(self) -> str:
        out = '<h2 id="plots">Per-organ plots</h2>'
        for title, (png, why) in [("Dice per organ", dice_plot(self.m)),
                                  ("HU per organ, generated vs reference", hu_plot(self.m.get("cases"))),
                                  ("Adjacent-slice SSIM along z", ssim_plot(self.m.get("cases")))]:
            out += f"<h3>{title}</h3>" + (
                f'<img class="plot" alt="{esc(title)}" src="{png}"><p class="caption">{esc(why)}</p>' if png
                else f"<p>{value_cell(None, why)}</p>")
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
            short = esc(report[:90]) + ("…" if len(report) > 90 else "")  # the full text is in the details
            rows.append([esc(c.get("case", "?")), f'<span title="{esc(report)}">{short}</span>']
                        + [value_cell(*_mean_of(c.get(k), k, c, self.m)) for k in ("dice", "hd95_mm")]
                        + [value_cell(c.get(k), case_reason(k, c, self.m))
                           for k in ("flow_epe_px", "warp_error", "warp_error_reference")]
                        + [value_cell(*_mean_of(c.get(k), k, c, self.m))
                           for k in ("ssim_profile", "ssim_profile_reference")])
            details.append(f"<details><summary>{esc(c.get('case', '?'))}</summary>{self._case_detail(c)}</details>")
        return ('<h2 id="cases">Per case</h2><p>Means are over organs (Dice, HD95) or over slice pairs (SSIM); '
                "n/a entries were not computed and say why.</p>" + table_html(head, rows, "num cases")
                + "".join(details))

    def _case_detail(self, c: dict) -> str:
        """The full report, files, a per-organ table, and every other key of the case."""
        maps = [(k, t) for k, t in ORGAN_MAPS.items() if k in c]
        hu = {o: as_dict(x) for o, x in as_dict(c.get("hu")).items()}
        hu_cols = list(dict.fromkeys([*(HU_KEYS if hu else ()), *(f for x in hu.values() for f in x)]))
        organs = list(dict.fromkeys([*(o for k, _ in maps for o in as_dict(c[k])), *hu]))
        no_ref = "reference" in c and is_missing(c["reference"])

        def cell(d: dict, key: str) -> str:
            if key in d:
                return value_cell(d[key], case_reason(key, c, self.m, d))
            return value_cell(None, "no reference CT for this case" if no_ref and "reference" in key
                          else "not reported for this organ")

        rows = [[esc(o)] + [cell(as_dict(c[k]), o) for k, _ in maps] + [cell(hu.get(o, {}), f) for f in hu_cols]
                for o in organs]
        head = ["organ", *(t for _, t in maps), *(HU_TITLES.get(f, "HU " + f.replace("_", " ")) for f in hu_cols)]
        files = {k: c[k] if c[k] is not None else "none" for k in ("generated", "mask", "reference") if k in c}
        extra = {k: v for k, v in c.items() if k not in CASE_COLUMNS}
        return ((f"<p>Report: {esc(c['report'])}</p>" if c.get("report") else "") + self.render(files, "", c)
                + (table_html(head, rows, "num") if rows else "") + (self.render(extra, "", c) if extra else ""))

    def other_sections(self) -> str:
        out = '<h2 id="other">Other sections</h2>'
        for k, v in self.m.items():
            if k not in TOP_LEVEL:
                out += f"<h3>{self.key(k)}</h3>" + self.render(v, k, self.m)
        return out


def _mean_of(d: Any, key: str, case: dict, m: dict) -> tuple[Any, str | None]:
    """Mean of the non-missing values of a dict or list, with the reason when there are none."""
    vals = list(d.values()) if isinstance(d, dict) else list(d) if isinstance(d, list) else []
    ok = [float(v) for v in vals if not is_missing(v)]
    if ok:
        return float(np.mean(ok)), None
    if key not in case:
        return None, f"{key} not in metrics.json"
    return None, case_reason(key, case, m) or ("every value n/a" if vals else None)


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
