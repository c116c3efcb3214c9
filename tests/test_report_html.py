"""The HTML report: one offline page, n/a with reasons instead of zeros, Fréchet values that name their
features, and a slice viewer whose sliders work in a real browser (headless Chromium)."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pytest

from tracect.evaluate.report import ViewerCase, write_report

from chromium import dump_dom

NAMES = {1: "liver", 2: "vertebrae"}


def synthetic_case(name: str, seed: int, shape=(24, 32, 32), spacing=(5.0, 1.5, 1.5),
                   reference: bool = True) -> ViewerCase:
    """A torso-like ``(Z, Y, X)`` volume in canonical layout: liver on the patient's right (low x),
    spine posterior (high y), and a slow change along z so that every slice differs."""
    rng = np.random.default_rng(seed)
    Z, Y, X = shape
    z, y, x = np.meshgrid(np.arange(Z), np.arange(Y), np.arange(X), indexing="ij")
    body = ((y - Y / 2) / (0.35 * Y)) ** 2 + ((x - X / 2) / (0.42 * X)) ** 2 < 1
    liver = (((y - 0.45 * Y) / (0.15 * Y)) ** 2 + ((x - 0.3 * X) / (0.15 * X)) ** 2
             + ((z - 0.4 * Z) / (0.3 * Z)) ** 2 < 1)
    spine = (y - 0.75 * Y) ** 2 + (x - X / 2) ** 2 < (0.08 * X) ** 2
    labels = np.zeros(shape, np.uint8)
    labels[body & liver] = 1
    labels[body & spine] = 2

    def ct(shift: float) -> np.ndarray:
        hu = np.where(body, 30.0 + 40 * np.sin(z / 3.0), -1000.0) + np.where(labels == 1, 40 + shift, 0)
        hu = np.where(labels == 2, 500.0, hu) + rng.normal(0, 15, shape)
        return hu.astype(np.float32)  # (Z, Y, X) HU

    return ViewerCase(name, ct(0), labels, spacing, ct(10) if reference else None, NAMES)


def gappy_metrics() -> dict:
    """metrics.json with values that could not be computed, each with its reason in a different place."""
    profile = [0.9 - 0.01 * np.sin(k / 2) for k in range(23)]
    return {
        "tracect_version": "0.1.0", "created": "2025-01-01T00:00:00Z",
        "settings": {"seeds": [0, 1], "window": {"level": 40, "width": 400}, "reference_dataset": None},
        "feature_extractor": {"name": "segmenter-encoder", "note": "no Inception weights given"},
        "segmenter": {"name": "unet2d", "checkpoint": "seg.pt", "reference_dice": {"liver": 0.95, "vertebrae": 0.9}},
        "cases": [
            {"case": "with_ref", "reference": "images/a.nii.gz", "report": "Arterial phase.",
             "dice": {"liver": 0.9, "vertebrae": 0.8}, "hd95_mm": {"liver": 3.0, "vertebrae": 2.0},
             "flow_epe_px": 0.4, "warp_error": 0.1, "warp_error_reference": 0.09,
             "ssim_profile": profile, "ssim_profile_reference": profile,
             "hu": {"liver": {"median": 60, "iqr": 20, "reference_median": 62, "reference_iqr": 18}}},
            {"case": "no_ref", "reference": None, "report": "Fatty liver.",
             "dice": {"liver": float("nan"), "vertebrae": 0.7}, "hd95_mm": {"liver": None, "vertebrae": 2.5},
             "flow_epe_px": None, "warp_error": 0.12, "warp_error_reference": None,
             "ssim_profile": profile, "ssim_profile_reference": None,
             "hu": {"liver": {"median": 20, "iqr": 25, "reference_median": None, "reference_iqr": None}},
             "notes": ["flow_epe_px needs the real CT of the case", "liver: segmentation empty"]},
        ],
        "aggregate": {
            "dice_mean": {"mean": 0.8, "ci95": [0.7, 0.9], "n": 2},
            "ms_ssim": {"mean": None, "ci95": None, "n": 0, "reason": "a single seed per condition"},
            "frechet_axial": {"mean": 12.5, "ci95": [10.0, 15.0], "n": 2},
            "dice_per_organ": {"liver": {"mean": 0.9, "ci95": [0.85, 0.95], "n": 1},
                               "vertebrae": {"mean": float("nan"), "ci95": None, "n": 0}},
            "reasons": {"vertebrae": "vertebrae were not segmented"},
        },
        "distribution": {"fd_axial": 3.2, "frechet_coronal": float("nan"),
                         "notes": ["frechet_coronal: fewer than two volumes"]},
        "diversity": {"pairs": 0, "ms_ssim": None, "note": "no two volumes share mask and report"},
        "adherence": {"fatty_liver": {"accuracy": 1.0, "auroc": None, "reasons": {"auroc": "one class only"}}},
        "privacy": {"fraction_above": None},
        "unheard_of": {"depth": {"deeper": "still shown"}},
    }


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "report.html"
    write_report(path, gappy_metrics(), [synthetic_case("with_ref", 0),
                                         synthetic_case("no_ref", 1, reference=False)])
    return path


def visible_text(page: str) -> str:
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def rows_with(page: str, word: str) -> list[str]:
    """Visible text of the innermost table rows that mention ``word``."""
    rows = re.findall(r"<tr>((?:(?!<tr>).)*?)</tr>", page, flags=re.S)
    return [t for t in map(visible_text, rows) if word in t]


def test_missing_values_show_na_and_their_reason(report):
    page = report.read_text()
    assert rows_with(page, "ms_ssim")[0].split()[:2] == ["ms_ssim", "n/a"]
    assert "a single seed per condition" in rows_with(page, "ms_ssim")[0]
    # NaN mean of an organ, reason in the enclosing "reasons" mapping
    assert any("n/a vertebrae were not segmented" in r for r in rows_with(page, "vertebrae"))
    # NaN in a generic section, reason in its notes
    assert "n/a frechet_coronal: fewer than two volumes" in rows_with(page, "frechet_coronal")[0]
    assert "n/a one class only" in rows_with(page, "auroc")[0]
    assert "n/a no reason recorded" in rows_with(page, "fraction_above")[0]
    # the note of the section that holds the value, when nothing names the value itself
    assert "n/a notes: no two volumes share mask and report" in rows_with(page, "ms_ssim")[-1]
    assert "reference_dataset not given" in rows_with(page, "reference_dataset")[0]  # an option, not a failure
    case = rows_with(page, "Fatty liver.")[0]
    assert "n/a flow_epe_px needs the real CT of the case" in case
    assert "n/a no reference CT for this case" in case
    assert "n/a liver: segmentation empty" in " ".join(rows_with(page, "liver"))
    text = visible_text(page)
    assert not re.search(r"\b(nan|NaN|None)\b", text), "a missing value leaked into the page as text"


def test_frechet_values_name_their_feature_extractor(report):
    page = report.read_text()
    for key in ("frechet_axial", "frechet_coronal", "fd_axial"):
        assert all("features: segmenter-encoder" in r for r in rows_with(page, key))
    assert "not a standard FID" in visible_text(page)


def test_every_section_is_shown(report):
    text = visible_text(report.read_text())
    for heading in ("Settings", "Aggregate", "Per-organ plots", "Per case", "Slice viewer", "adherence",
                    "privacy", "unheard_of"):
        assert heading in text
    assert "still shown" in text
    assert "level 40 / width 400 HU" in text


def test_page_is_self_contained(report):
    page = report.read_text()
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page and "@import" not in page and "url(" not in page
    srcs = re.findall(r'\bsrc="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert len(re.findall(r'<img class="plot"', page)) == 3


def test_large_volume_is_capped_and_says_so(tmp_path):
    case = synthetic_case("big", 2, shape=(40, 70, 60), spacing=(2.0, 0.8, 0.8))
    path = write_report(tmp_path / "r.html", {}, [case], max_axial=10, max_reformat=8, max_size=32)
    page = path.read_text()
    data = json.loads(re.search(r'class="viewer-data">(.*?)</script>', page).group(1))
    assert len(data["axial"]["gen"]) == 10 and data["axial"]["total"] == 40
    assert len(data["coronal"]["ref"]) == 8 and data["sagittal"]["total"] == 60
    text = visible_text(page)
    assert "axial: 10 of 40 slices embedded, shown at 30×23 px instead of 60×70" in text
    assert "n/a" in text and "Fréchet" not in text  # an empty metrics.json still gives a page


def test_viewer_case_checks_its_arrays():
    case = synthetic_case("x", 0)
    with pytest.raises(ValueError, match="labels shape"):
        ViewerCase("x", case.generated, case.labels[:-1], case.spacing)
    with pytest.raises(ValueError, match="spacing"):
        ViewerCase("x", case.generated, case.labels, (1.0, 0.0, 1.0))


def self_test(path) -> dict:
    """Open the page with ``#selftest`` and read what its viewer self-test wrote into the DOM."""
    dom = dump_dom(path.resolve().as_uri() + "#selftest")
    found = re.search(r'<pre id="selftest"[^>]*>(.*?)</pre>', dom, flags=re.S)
    assert found and found.group(1).strip(), "the viewer self-test wrote nothing: the page's script did not run"
    result = json.loads(html.unescape(found.group(1)))
    assert "error" not in result, result
    return result


def test_viewer_renders_and_sliders_change_the_image_in_chromium(report):
    viewers = {v["case"]: v for v in self_test(report)["viewers"]}
    assert set(viewers) == {"with_ref", "no_ref"}
    Z, Y, X, (dz, dy, dx) = 24, 32, 32, (5.0, 1.5, 1.5)
    natural = {"axial": [X, Y], "coronal": [X, Z], "sagittal": [Y, Z]}
    mm = {"axial": (X * dx, Y * dy), "coronal": (X * dx, Z * dz), "sagittal": (Y * dy, Z * dz)}
    for name, v in viewers.items():
        assert v["overlay_hidden"] and v["overlay_back"], f"{name}: the mask overlay toggle does nothing"
        for view, r in v["views"].items():
            where = f"{name} {view}"
            assert r["panels"] == (2 if name == "with_ref" else 1), where
            assert r["src_is_png"] and r["natural_before"] == r["natural_after"] == natural[view], where
            assert r["value_after"] != r["value_before"], where
            assert r["src_changed"], f"{where}: moving the slider did not change the image"
            assert r["pos_after"] != r["pos_before"], where
            w, h = r["box"]
            assert w > 0 and abs(w / h - mm[view][0] / mm[view][1]) < 0.02, f"{where}: aspect {w}x{h}"


def test_self_test_catches_a_dead_slider(report, tmp_path):
    """The browser check above has teeth: with the slider's handler removed it reports no change."""
    page = report.read_text()
    wiring = 'slider.addEventListener("input", show);'
    assert page.count(wiring) == 1
    broken = tmp_path / "broken.html"
    broken.write_text(page.replace(wiring, ""))
    views = [r for v in self_test(broken)["viewers"] for r in v["views"].values()]
    assert views and not any(r["src_changed"] for r in views)
