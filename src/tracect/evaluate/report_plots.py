"""The plots of the evaluation page, as inline PNG: Dice per organ, HU per organ, adjacent-slice SSIM
along z. Matplotlib's object API: no pyplot, so no global figure state."""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np

from tracect.evaluate.report_values import HU_KEYS, as_dict, is_missing, reason_for


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
    return float("nan") if is_missing(v) else float(v)


def dice_plot(m: dict) -> tuple[str | None, str]:
    per = {o: s if isinstance(s, dict) else {"mean": s}
           for o, s in as_dict(as_dict(m.get("aggregate")).get("dice_per_organ")).items()}
    ref = as_dict(as_dict(m.get("segmenter")).get("reference_dice"))
    from_cases = not per
    if from_cases:  # no aggregate: plain means over the cases, drawn without intervals
        cases = m.get("cases") if isinstance(m.get("cases"), list) else []
        dice = [c["dice"] for c in cases if isinstance(c, dict) and isinstance(c.get("dice"), dict)]
        for o in dict.fromkeys(o for d in dice for o in d):
            vals = [float(d[o]) for d in dice if not is_missing(d.get(o))]
            per[o] = {"mean": float(np.mean(vals)) if vals else None}
    ref = {o: v for o, v in ref.items() if o != "mean"}  # the segmenter's own average is not an organ
    organs = list(dict.fromkeys([*per, *ref]))
    if not organs:
        return None, reason_for("dice_per_organ", m.get("aggregate"), m) or "no Dice per organ in metrics.json"
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
        if ref and is_missing(ref.get(o)):
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


def hu_plot(cases: Any) -> tuple[str | None, str]:
    per: dict[str, list[tuple[float, float, float, float]]] = {}
    for c in cases if isinstance(cases, list) else []:
        for o, h in as_dict(as_dict(c).get("hu")).items():
            h = as_dict(h)
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


def ssim_plot(cases: Any) -> tuple[str | None, str]:
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
