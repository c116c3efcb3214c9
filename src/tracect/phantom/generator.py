"""Phantom cases and datasets: random torso CTs with a `total` mask, a report and the ground truth.

A case is fully determined by its seed (one ``numpy.random.Generator`` per case). Geometry: the
canonical layout ``(Z, Y, X)`` (slice 0 most superior, row 0 anterior, column 0 the patient's right);
the affine maps voxels to RAS+ mm with the torso coordinate ``t`` (mm, 0 = top of T1) at S = -t.
"""

from __future__ import annotations

import csv
import io
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tracect.io.volume import Volume
from tracect.phantom import anatomy, geometry, intensity, reports
from tracect.utils.atomic import atomic_path, write_json, write_text


def _range(name: str, v, lo: float, hi: float = float("inf"), integer: bool = False) -> None:
    """Check a (low, high) field; the error names it."""
    try:
        a, b = (float(x) for x in v)
        ok = lo <= a <= b <= hi and (not integer or (a.is_integer() and b.is_integer()))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"PhantomConfig.{name}: expected (low, high) with {lo} <= low <= high <= {hi}; got {v!r}")


@dataclass(frozen=True)
class PhantomConfig:
    """What varies between phantom cases, and how much (ranges are inclusive, mm where lengths)."""
    size: int = 64                                           # in-plane matrix (size x size)
    slices: tuple[int, int] = (80, 112)                      # range of slice counts
    # mm; the body is fitted to the FOV. Default: (5.5, 7.5) at 64 px, scaled by 64 / size (the same
    # field of view at any matrix: a 256 px phantom has 1.4-1.9 mm pixels, as a real CT downsampled 2x)
    pixel_spacing: tuple[float, float] | None = None
    slice_thickness: tuple[float, float] = (2.5, 5.0)        # mm (= slice spacing)
    p_arterial: float = 0.5                                  # else non-contrast
    p_fatty_liver: float = 0.25
    p_lesion: float = 0.4                                    # probability of any focal lesion
    max_lesions: int = 2
    lesion_diameter_mm: tuple[float, float] = (8.0, 30.0)
    noise_std: tuple[float, float] = (8.0, 20.0)             # HU

    def __post_init__(self):
        if isinstance(self.size, bool) or not isinstance(self.size, (int, np.integer)) or self.size < 16:
            raise ValueError(f"PhantomConfig.size: expected an int >= 16; got {self.size!r}")
        _range("slices", self.slices, 1, integer=True)
        if self.pixel_spacing is None:
            object.__setattr__(self, "pixel_spacing", tuple(round(v * 64 / self.size, 4) for v in (5.5, 7.5)))
        _range("pixel_spacing", self.pixel_spacing, 0.1, 50)
        _range("slice_thickness", self.slice_thickness, 0.1, 50)
        _range("lesion_diameter_mm", self.lesion_diameter_mm, 1, 200)
        _range("noise_std", self.noise_std, 0, 500)
        for name in ("p_arterial", "p_fatty_liver", "p_lesion"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"PhantomConfig.{name}: a probability in [0, 1]; got {getattr(self, name)}")
        if isinstance(self.max_lesions, bool) or not isinstance(self.max_lesions, (int, np.integer)) \
                or self.max_lesions < 1:
            raise ValueError(f"PhantomConfig.max_lesions: expected an int >= 1; got {self.max_lesions!r}")


@dataclass(frozen=True)
class PhantomCase:
    """One phantom CT: image and mask on the same canonical grid, the report and what it states."""
    case_id: str
    image: Volume      # int16 HU, canonical (Z, Y, X)
    mask: Volume       # uint8 `total` ids, same grid and affine
    report: str
    findings: dict = field(default_factory=dict)  # JSON-serialisable ground truth of the report


def _fit_fov(body: geometry.Body, size: int, px: float) -> None:
    """Shrink the cross-section if needed so that >= 3 pixels of air surround the body."""
    half = (size / 2 - 3) * px
    ext = max(body.extent())
    if ext > half:
        body.shrink(half / ext)


def _grid(body: geometry.Body, size: int, px: float, dz: float, n: int, t0: float) -> tuple[geometry.Grid, np.ndarray]:
    """Body-frame coordinates of the voxel centres and the canonical voxel -> RAS affine."""
    c = (size - 1) / 2
    grid = geometry.Grid(t=t0 + dz * np.arange(n), y=(np.arange(size) - c) * px - body.cy,
                        x=(np.arange(size) - c) * px - body.cx)
    affine = np.array([[0, 0, -px, c * px], [0, -px, 0, c * px], [-dz, 0, 0, -t0], [0, 0, 0, 1]], float)
    return grid, affine


def _coverage(rng: np.random.Generator, body: geometry.Body, length: float) -> float:
    """t of the first slice: a random window of the torso model, centred when longer than it."""
    lo, hi = body.t_min, body.t_end - length
    return float(rng.uniform(lo, hi)) if hi > lo else (body.t_min + body.t_end - length) / 2


def make_case(case_id: str, seed: int, config: PhantomConfig = PhantomConfig()) -> PhantomCase:
    """One random torso CT with its mask, report and findings (deterministic in ``seed``)."""
    return simulate(case_id, seed, config)[0]


def simulate(case_id: str, seed: int, config: PhantomConfig = PhantomConfig()) -> tuple[PhantomCase, anatomy.Anatomy]:
    """:func:`make_case` and the anatomy it was drawn from (tissue map, landmarks), for checks."""
    rng = np.random.default_rng(seed)
    cfg = config
    body = geometry.sample_body(rng)
    need = max(body.extent()) / (cfg.size / 2 - 3)  # the scanner's FOV is fitted to the patient
    lo, hi = cfg.pixel_spacing
    px = float(rng.uniform(min(max(lo, need), hi), min(max(lo, 1.2 * need), hi)))
    _fit_fov(body, cfg.size, px)
    dz = float(rng.uniform(*cfg.slice_thickness))
    n = int(rng.integers(cfg.slices[0], cfg.slices[1] + 1))
    grid, affine = _grid(body, cfg.size, px, dz, n, _coverage(rng, body, n * dz))
    anat = anatomy.build(grid, body, rng)

    phase = "arterial" if rng.uniform() < cfg.p_arterial else "non-contrast"
    fatty = bool(rng.uniform() < cfg.p_fatty_liver)
    lut = intensity.sample_hu(rng, phase, fatty)
    n_les = int(rng.integers(1, cfg.max_lesions + 1)) if rng.uniform() < cfg.p_lesion else 0
    spacing = (dz, px, px)
    noise = float(rng.uniform(*cfg.noise_std))
    lesions = intensity.place_lesions(rng, anat, spacing, phase, lut, n_les, cfg.lesion_diameter_mm, noise)
    hu = intensity.render(rng, anat, lut, lesions, spacing, noise)

    meta = {"source": "tracect.phantom", "case_id": case_id, "seed": int(seed)}
    image = Volume(hu, affine, dict(meta))
    mask = Volume(anat.labels, affine, dict(meta))
    findings = _findings(anat, image, lut, lesions, phase, fatty, spacing)
    return PhantomCase(case_id, image, mask, reports.write_report(findings, rng), findings), anat


def _findings(anat, image: Volume, lut, lesions, phase: str, fatty: bool, spacing) -> dict:
    """The ground truth the report is written from (JSON-serialisable)."""
    T = geometry.Tissue
    present = reports.structures_in_view(anat.labels)
    out_lesions = []
    for les in lesions:
        world = image.world(np.array(les["center_zyx"], float))
        out_lesions.append({"organ": les["organ"], "location": les["location"], "kind": les["kind"],
                            "diameter_mm": les["diameter_mm"], "hu": les["hu"], "center_zyx": les["center_zyx"],
                            "center_ras_mm": [round(float(v), 1) for v in world]})
    return {
        "contrast_phase": phase,
        "fatty_liver": bool(fatty and "liver" in present),
        "lesions": out_lesions,
        "body_region": reports.body_region(anat.labels, spacing[0]),
        "structures": sorted(present),
        "cholecystectomy": bool(not anat.info["gallbladder"] and "liver" in present
                                and anat.grid.t[-1] > anat.info["gallbladder_c"][0]),
        "slice_thickness_mm": round(float(spacing[0]), 3),
        "pixel_spacing_mm": round(float(spacing[1]), 3),
        "shape_zyx": list(image.shape),
        "organ_hu": {"liver": round(float(lut[T.LIVER]), 1), "spleen": round(float(lut[T.SPLEEN]), 1),
                     "aorta": round(float(lut[T.ARTERY]), 1), "kidney": round(float(lut[T.KIDNEY_CORTEX]), 1)},
    }


def make_mask(n_slices: int, seed: int, size: int = 64, pixel_spacing: float = 6.0,
              slice_thickness: float = 4.0) -> Volume:
    """A phantom label mask alone (uint8 `total` ids, canonical ``(n_slices, size, size)``), e.g. to
    generate a CT when only a report is at hand. Any ``n_slices >= 1``: a window of the torso when
    shorter than it, else the whole torso centred (slices beyond it hold no labels)."""
    if n_slices < 1 or size < 16 or pixel_spacing <= 0 or slice_thickness <= 0:
        raise ValueError("make_mask: n_slices >= 1, size >= 16 and positive spacings are required")
    rng = np.random.default_rng(seed)
    body = geometry.sample_body(rng)
    _fit_fov(body, size, pixel_spacing)
    t0 = _coverage(rng, body, n_slices * slice_thickness)
    grid, affine = _grid(body, size, pixel_spacing, slice_thickness, n_slices, t0)
    anat = anatomy.build(grid, body, rng)
    return Volume(anat.labels, affine, {"source": "tracect.phantom", "seed": int(seed)})


# ---------------------------------------------------------------------------------------------
# datasets

def case_seed(seed: int, i: int) -> int:
    """The seed of case ``i`` of a dataset: independent streams from (seed, i)."""
    return int(np.random.SeedSequence([seed, i]).generate_state(1, np.uint32)[0])


def save_nifti(vol: Volume, path: Path) -> None:
    """Write a canonical volume as RAS NIfTI (sform = qform = scanner, mm, no scaling), atomically."""
    import nibabel as nib

    ras = vol.reorient(("R", "A", "S"))
    img = nib.Nifti1Image(ras.array, ras.affine)
    img.header.set_xyzt_units("mm")
    img.set_sform(ras.affine, code=1)
    img.set_qform(ras.affine, code=1)
    img.header.set_slope_inter(1, 0)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))


def _write_case(out: Path, case_id: str, seed: int, config: PhantomConfig) -> tuple[str, str, dict]:
    case = make_case(case_id, seed, config)
    save_nifti(case.image, out / "images" / f"{case_id}.nii.gz")
    save_nifti(case.mask, out / "masks" / f"{case_id}.nii.gz")
    return case_id, case.report, case.findings


def _existing(out: Path) -> tuple[dict, dict]:
    """Reports and findings of an earlier run, to skip cases that are already complete."""
    rep, fin = {}, {}
    if (out / "reports.csv").is_file():
        with open(out / "reports.csv", newline="", encoding="utf-8") as f:
            rep = {r["case"]: r["report"] for r in csv.DictReader(f)}
    if (out / "findings.jsonl").is_file():
        for line in (out / "findings.jsonl").read_text(encoding="utf-8").splitlines():
            if line.strip():
                obj = json.loads(line)
                fin[obj.pop("case")] = obj
    return rep, fin


def split_ids(ids: list[str], seed: int) -> dict[str, list[str]]:
    """~80/10/10 train/val/test, shuffled by ``seed``; val and test get at least one case when n >= 3."""
    order = [ids[i] for i in np.random.default_rng([seed, 7]).permutation(len(ids))]
    n = len(ids)
    k = max(1, round(0.1 * n)) if n >= 3 else 0
    return {"train": sorted(order[2 * k:]), "val": sorted(order[:k]), "test": sorted(order[k:2 * k])}


def write_dataset(out: Path, n: int, seed: int = 0, config: PhantomConfig = PhantomConfig(), workers: int = 1,
                  progress: bool = True, prefix: str = "phantom", split: str | None = None) -> list[str]:
    """Write ``n`` phantom cases in the tracect dataset layout under ``out``; returns the case ids
    (``PREFIX_000``, ...).

    images/CASE.nii.gz (int16 HU) and masks/CASE.nii.gz (uint8 `total`) in RAS, reports.csv,
    findings.jsonl, dataset.json. ``split``: every case in that split (a held-out draw: ``"test"``),
    else about 80/10/10 train/val/test. Re-running skips cases whose files and rows already exist.
    """
    from tqdm import tqdm

    if n < 1:
        raise ValueError(f"write_dataset: n must be >= 1; got {n}")
    out = Path(out)
    ids = [f"{prefix}_{i:03d}" for i in range(n)]
    old_rep, old_fin = _existing(out)
    rows: dict[str, tuple[str, dict]] = {}
    todo = []
    for i, cid in enumerate(ids):
        done = all((out / d / f"{cid}.nii.gz").is_file() for d in ("images", "masks"))
        if done and cid in old_rep and cid in old_fin:
            rows[cid] = (old_rep[cid], old_fin[cid])
        else:
            todo.append((cid, case_seed(seed, i)))
    bar = tqdm(total=n, initial=n - len(todo), desc="phantom", unit="case", disable=not progress)
    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=workers) as ex:
            futures = [ex.submit(_write_case, out, cid, s, config) for cid, s in todo]
            for fut in futures:
                cid, rep, fin = fut.result()
                rows[cid] = (rep, fin)
                bar.update(1)
    else:
        for cid, s in todo:
            cid, rep, fin = _write_case(out, cid, s, config)
            rows[cid] = (rep, fin)
            bar.update(1)
    bar.close()
    _write_tables(out, ids, rows, seed, config, {split: ids} if split else split_ids(ids, seed))
    return ids


def _write_tables(out: Path, ids: list[str], rows: dict, seed: int, config: PhantomConfig, split: dict) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n")
    w.writerow(["case", "report"])
    for cid in ids:
        w.writerow([cid, rows[cid][0]])
    write_text(out / "reports.csv", buf.getvalue())
    write_text(out / "findings.jsonl", "".join(json.dumps({"case": cid, **rows[cid][1]}) + "\n" for cid in ids))
    write_json(out / "dataset.json", {"name": "tracect-phantom", "vocabulary": "total",
                                      "generator": "tracect.phantom", "seed": seed,
                                      "config": asdict(config), "split": split})

