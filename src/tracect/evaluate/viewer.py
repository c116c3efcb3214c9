"""The slice viewer of the evaluation report: per case, axial slices of the generated CT beside the
reference with a mask overlay that can be switched off, and coronal and sagittal reformats, every slice
inlined as a PNG ``data:`` URI and swapped by a plain script (no network, no libraries).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tracect.generate.outputs import DISPLAY_WINDOW

PANEL_PX = 300  # long side of one viewer panel on screen, px
# Orientation letters at the (left, right, top, bottom) edges of each view of the canonical array.
EDGES = {"axial": "RLAP", "coronal": "RLSI", "sagittal": "APSI"}


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


@dataclass
class ViewerCase:
    """One case for the slice viewer; every array is ``(Z, Y, X)`` on the same grid.

    Canonical layout: z toward inferior (index 0 = top), y toward posterior, x toward the patient's
    left, so slices shown as stored follow the radiological convention. ``generated`` and ``reference``
    are HU; ``labels`` are uint8 label ids (0 = background); ``spacing`` is ``(z, y, x)`` in mm.
    """

    name: str
    generated: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float]
    reference: np.ndarray | None = None
    label_names: dict[int, str] = field(default_factory=dict)

    def __post_init__(self):
        if np.ndim(self.generated) != 3:
            raise ValueError(f"ViewerCase '{self.name}': generated must be (Z, Y, X), "
                             f"got {np.shape(self.generated)}")
        for attr in ("labels", "reference"):
            arr = getattr(self, attr)
            if arr is not None and np.shape(arr) != np.shape(self.generated):
                raise ValueError(f"ViewerCase '{self.name}': {attr} shape {np.shape(arr)} differs from "
                                 f"generated {np.shape(self.generated)}")
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise ValueError(f"ViewerCase '{self.name}': spacing must be three positive mm values, "
                             f"got {self.spacing}")


def label_colours(cases: list[ViewerCase]) -> dict[int, tuple[int, int, int]]:
    """One colour per label id across the whole page, so an organ looks the same in every case."""
    from matplotlib import colormaps

    tab20 = colormaps["tab20"].colors
    # Strong hues first (tab20's even entries), so the first ten organs never share a hue.
    palette = [*tab20[0::2], *tab20[1::2], *colormaps["tab20b"].colors, *colormaps["tab20c"].colors]
    ids = sorted({int(i) for c in cases for i in np.unique(c.labels) if i != 0})
    return {i: tuple(int(255 * x) for x in palette[k % len(palette)][:3]) for k, i in enumerate(ids)}


def _encode(img: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _shrink(img: np.ndarray, max_size: int, labels: bool) -> np.ndarray:
    """A 2D slice at most ``max_size`` a side: block means for HU, every f-th voxel for label ids."""
    f = [max(1, math.ceil(n / max_size)) for n in img.shape]
    if f == [1, 1]:
        return img
    img = img[: img.shape[0] // f[0] * f[0], : img.shape[1] // f[1] * f[1]]
    if labels:
        return img[:: f[0], :: f[1]]
    return img.reshape(img.shape[0] // f[0], f[0], img.shape[1] // f[1], f[1]).mean(axis=(1, 3))


def _take(vol: np.ndarray, view: str, i: int) -> np.ndarray:
    """Slice ``i`` of a ``(Z, Y, X)`` volume along ``view``: axial ``(Y, X)``, coronal ``(Z, X)``,
    sagittal ``(Z, Y)``; rows run anterior->posterior or superior->inferior as stored."""
    return vol[i] if view == "axial" else vol[:, i, :] if view == "coronal" else vol[:, :, i]


def _grey(hu: np.ndarray) -> np.ndarray:
    lo, hi = DISPLAY_WINDOW
    return np.round(np.clip((hu - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def case_viewer(case: ViewerCase, idx: int, colours: dict, max_axial: int, max_reformat: int, max_size: int) -> str:
    """One case's viewer: a section holding the views' HTML and, as JSON, every embedded slice."""
    lut = np.zeros((max(int(case.labels.max(initial=0)), 255) + 1, 4), np.uint8)  # label id -> RGBA
    for i, rgb in colours.items():
        if i < len(lut):
            lut[i] = (*rgb, 120)  # organs tinted, anatomy still visible underneath
    Z, Y, X = case.generated.shape
    dz, dy, dx = (float(s) for s in case.spacing)
    # view -> (slices along it, cap, (height, width) of its slice in mm)
    axes = {"axial": (Z, max_axial, (Y * dy, X * dx)), "coronal": (Y, max_reformat, (Z * dz, X * dx)),
            "sagittal": (X, max_reformat, (Z * dz, Y * dy))}
    layers = [("gen", case.generated, "generated")]
    if case.reference is not None:
        layers.append(("ref", case.reference, "reference"))
    data, views, notes = {}, [], []
    for view, (n, cap, (h_mm, w_mm)) in axes.items():
        index = np.unique(np.linspace(0, n - 1, min(n, cap)).round().astype(int))
        d: dict[str, Any] = {"index": index.tolist(), "total": n}
        for key, vol, _ in layers:
            d[key] = [_encode(_grey(_shrink(_take(vol, view, i).astype(np.float32), max_size, False)))
                      for i in index]
        d["lab"] = [_encode(lut[_shrink(_take(case.labels, view, i), max_size, True)]) for i in index]
        data[view] = d
        full = _take(case.labels, view, 0).shape
        shown = _shrink(_take(case.labels, view, 0), max_size, True).shape
        if len(index) < n or shown != full:
            notes.append(f"{view}: {len(index)} of {n} slices embedded" + (
                f", shown at {shown[1]}×{shown[0]} px instead of {full[1]}×{full[0]}" if shown != full else ""))
        scale = PANEL_PX / max(h_mm, w_mm)  # px per mm: the aspect on screen is the physical one
        views.append(_view_html(view, len(index) // 2, d, layers, round(w_mm * scale), round(h_mm * scale)))
    names, present = case.label_names, {int(i) for i in np.unique(case.labels)}
    legend = "".join(f'<span class="sw" style="background:rgb{colours[i]}"></span>{_e(names.get(i, f"label {i}"))} '
                     for i in sorted(colours) if i in present)
    ref_note = ("" if case.reference is not None
                else '<p class="noref">No reference CT for this case: generated only.</p>')
    meta = (f"grid {Z}×{Y}×{X} (z, y, x), spacing {dz:g} × {dy:g} × {dx:g} mm"
            + ("; " + "; ".join(notes) if notes else "; every slice embedded at full resolution"))
    blob = json.dumps(data).replace("</", "<\\/")  # a case name cannot close the script element
    return (f'<section class="viewer" id="viewer-{idx}" data-case="{_e(case.name)}"><h3>{_e(case.name)}</h3>'
            f'<p class="meta">{_e(meta)}</p>{ref_note}<p><label><input type="checkbox" class="ov-toggle" checked> '
            f'mask overlay</label> <span class="legend">{legend or "(no labels)"}</span></p>'
            f'<div class="views">{"".join(views)}</div>'
            f'<script type="application/json" class="viewer-data">{blob}</script></section>')


def _view_html(view: str, start: int, d: dict, layers: list, w: int, h: int) -> str:
    """A slider and one panel per layer, each a CT image under its mask overlay, ``w`` x ``h`` px."""
    left, right, top, bottom = EDGES[view]
    marks = f'<i class="m l">{left}</i><i class="m r">{right}</i><i class="m t">{top}</i><i class="m b">{bottom}</i>'
    panels = "".join(
        f'<figure><div class="stack" style="width:{w}px;height:{h}px">'
        f'<img class="ct" data-layer="{key}" alt="{label} {view}" src="{d[key][start]}">'
        f'<img class="ov" data-layer="lab" alt="" src="{d["lab"][start]}">{marks}</div>'
        f"<figcaption>{label}</figcaption></figure>" for key, _, label in layers)
    return (f'<div class="view" data-view="{view}"><div class="head"><b>{view}</b> '
            f'<input type="range" min="0" max="{len(d["index"]) - 1}" value="{start}" aria-label="{view} slice"> '
            f'<span class="pos">slice {d["index"][start] + 1} / {d["total"]}</span></div>'
            f'<div class="panels">{panels}</div></div>')


VIEWER_NOTE = """<p>Drag a slider (or focus it and use the arrow keys) to move through the slices. HU are shown
with a soft-tissue window, level {level:g} / width {width:g} HU ({lo:g} HU black, {hi:g} HU white). Views keep
the physical aspect ratio from the voxel spacing; letters mark the patient's right/left (R/L), anterior/posterior
(A/P) and superior/inferior (S/I); axial and coronal views follow the radiological convention (patient's right
on the left of the image). Large volumes are embedded with fewer slices or fewer pixels to keep this file small;
each case says so below.</p>"""

# Plain script: each slider swaps the src of its view's images; "#selftest" in the address moves every
# slider once and writes what changed into <pre id="selftest">, so a headless browser can check the
# wiring from the DOM alone.
VIEWER_JS = r"""
"use strict";
function setupViewer(v) {
  const data = JSON.parse(v.querySelector("script.viewer-data").textContent);
  v.querySelectorAll(".view").forEach((view) => {
    const d = data[view.dataset.view];
    const slider = view.querySelector("input[type=range]");
    const pos = view.querySelector(".pos");
    const show = () => {
      const i = Number(slider.value);
      view.querySelectorAll("img[data-layer]").forEach((img) => { img.src = d[img.dataset.layer][i]; });
      pos.textContent = "slice " + (d.index[i] + 1) + " / " + d.total;
    };
    slider.addEventListener("input", show);
    show();
  });
  const toggle = v.querySelector(".ov-toggle");
  toggle.addEventListener("change", () => v.classList.toggle("no-overlay", !toggle.checked));
}
const loaded = (img) => new Promise((resolve) => {
  if (img.complete) { resolve(); return; }
  img.addEventListener("load", resolve, {once: true});
  img.addEventListener("error", resolve, {once: true});
});
async function selfTest() {
  const out = {viewers: []};
  for (const v of document.querySelectorAll(".viewer")) {
    const r = {case: v.dataset.case, views: {}};
    for (const view of v.querySelectorAll(".view")) {
      const slider = view.querySelector("input[type=range]");
      const img = view.querySelector("img[data-layer=gen]");
      const pos = view.querySelector(".pos");
      await loaded(img);
      const n = Number(slider.max) + 1;
      const before = {src: img.src, value: Number(slider.value), pos: pos.textContent,
                      natural: [img.naturalWidth, img.naturalHeight]};
      slider.value = String((before.value + Math.max(1, Math.floor(n / 3))) % n);
      slider.dispatchEvent(new Event("input", {bubbles: true}));
      await loaded(img);
      r.views[view.dataset.view] = {
        slices: n, value_before: before.value, value_after: Number(slider.value),
        src_is_png: img.src.startsWith("data:image/png;base64,"), src_changed: img.src !== before.src,
        pos_before: before.pos, pos_after: pos.textContent, natural_before: before.natural,
        natural_after: [img.naturalWidth, img.naturalHeight],
        box: [img.getBoundingClientRect().width, img.getBoundingClientRect().height],
        panels: view.querySelectorAll("img.ct").length};
    }
    const toggle = v.querySelector(".ov-toggle");
    const ov = v.querySelector("img.ov");
    toggle.click();
    r.overlay_hidden = getComputedStyle(ov).visibility === "hidden";
    toggle.click();
    r.overlay_back = getComputedStyle(ov).visibility === "visible";
    out.viewers.push(r);
  }
  return out;
}
document.querySelectorAll(".viewer").forEach(setupViewer);
if (location.hash === "#selftest") {
  const el = document.getElementById("selftest");
  selfTest().then((r) => { el.textContent = JSON.stringify(r); },
                  (e) => { el.textContent = JSON.stringify({error: String(e)}); });
}
"""
