"""Phantom radiology reports: FINDINGS and IMPRESSION text written from a case's ground-truth findings.

Wording varies by templates drawn from the case's random generator, but what a report states is
exactly what ``findings`` holds: the contrast phase ("non-contrast" or "arterial phase" always
appears verbatim), hepatic steatosis, each lesion's size in mm, organ and location, and negatives for
the organs in view.
"""

from __future__ import annotations

import numpy as np

from tracect.labels.vocabulary import total

# structures a report can talk about -> the `total` labels that show them
GROUPS = {
    "lungs": ("lung_upper_lobe_left", "lung_lower_lobe_left", "lung_upper_lobe_right",
              "lung_middle_lobe_right", "lung_lower_lobe_right"),
    "trachea": ("trachea",), "heart": ("heart",), "aorta": ("aorta",), "liver": ("liver",),
    "gallbladder": ("gallbladder",), "spleen": ("spleen",), "pancreas": ("pancreas",),
    "kidney_left": ("kidney_left",), "kidney_right": ("kidney_right",), "stomach": ("stomach",),
    "small_bowel": ("small_bowel",), "colon": ("colon",), "urinary_bladder": ("urinary_bladder",),
    "hip": ("hip_left", "hip_right"),
}
MIN_VOXELS = 20  # fewer voxels than this: a sliver at the edge of the scan, not worth a sentence


def structures_in_view(labels: np.ndarray) -> set[str]:
    """Names of :data:`GROUPS` with at least :data:`MIN_VOXELS` voxels in a `total` mask."""
    counts = np.bincount(labels.ravel(), minlength=256)
    voc = total()
    return {g for g, names in GROUPS.items() if sum(counts[voc.id_of(n)] for n in names) >= MIN_VOXELS}


def body_region(labels: np.ndarray, slice_thickness: float) -> str:
    """'chest', 'abdomen', 'chest-abdomen', 'abdomen-pelvis', 'chest-abdomen-pelvis'... of a `total`
    mask: the chest counts with >= 100 mm of lung (lung bases alone belong to an abdominal scan),
    the abdomen with >= 50 mm of liver, spleen or kidneys, the pelvis with bladder or femoral heads."""
    voc = total()

    def extent(names) -> float:
        ids = [voc.id_of(n) for n in names]
        return float(np.isin(labels, ids).any(axis=(1, 2)).sum() * slice_thickness)

    parts = []
    if extent(GROUPS["lungs"]) >= 100:
        parts.append("chest")
    if extent(("liver", "spleen", "kidney_left", "kidney_right")) >= 50:
        parts.append("abdomen")
    if extent(("urinary_bladder", "femur_left", "femur_right")) >= 20:
        parts.append("pelvis")
    return "-".join(parts) or "torso"


def _region_words(region: str) -> str:
    parts = region.split("-")
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _pick(rng: np.random.Generator, options) -> str:
    return options[int(rng.integers(len(options)))]


LESION_WORDS = {
    "cyst": ("A {d} mm well-circumscribed hypodense lesion in the {loc}, likely a simple cyst.",
             "A {d} mm fluid-attenuation hypodense lesion in the {loc}, consistent with a cyst.",
             "{D} mm simple cyst in the {loc}."),
    "hypodense": ("A {d} mm hypodense solid-appearing lesion in the {loc}, indeterminate.",
                  "A {d} mm ill-defined hypoattenuating lesion in the {loc}; further characterisation "
                  "with MRI is recommended.",
                  "{D} mm hypodense lesion in the {loc}, not a simple cyst."),
    "hyperenhancing": ("A {d} mm arterially hyperenhancing lesion in the {loc}.",
                       "A {d} mm hypervascular lesion in the {loc} enhancing avidly in the arterial phase.",
                       "{D} mm hyperenhancing lesion in the {loc}."),
}


IMPRESSION_WORDS = {
    "cyst": "{d} mm hypodense lesion in the {loc}, likely a simple cyst.",
    "hypodense": "{d} mm indeterminate hypodense lesion in the {loc}; MRI recommended.",
    "hyperenhancing": "{d} mm arterially hyperenhancing lesion in the {loc}; further characterisation recommended.",
}


def lesion_sentence(rng, les: dict) -> str:
    d = f"{les['diameter_mm']:.0f}"
    return _pick(rng, LESION_WORDS[les["kind"]]).format(d=d, D=d, loc=les["location"])


def _organ_lines(rng, f: dict, present: set[str], lesions_by: dict) -> list[str]:
    """One FINDINGS sentence group per organ in view, abnormal ones with the lesion sentences."""
    art = f["contrast_phase"] == "arterial"
    lines = []
    if "lungs" in present and "chest" not in f["body_region"]:  # an abdominal scan sees the bases only
        lines.append(_pick(rng, ("The visualised lung bases are clear.", "Clear lung bases. No pleural effusion.")))
    elif "lungs" in present:
        lines.append(_pick(rng, ("The lungs are clear. No consolidation, nodule or pleural effusion.",
                                 "No focal consolidation, suspicious pulmonary nodule or pleural effusion.",
                                 "Clear lungs without pneumothorax or effusion.")))
    if "trachea" in present:
        lines.append(_pick(rng, ("The central airways are patent.", "Trachea and main bronchi are patent.")))
    if "heart" in present:
        lines.append(_pick(rng, ("Heart size is normal. No pericardial effusion.",
                                 "Normal cardiac size without pericardial effusion.")))
    if "aorta" in present:
        lines.append(_pick(rng, ("The aorta opacifies normally without aneurysm or dissection.",
                                 "Dense opacification of the aorta, normal in calibre.")) if art else
                     _pick(rng, ("The aorta is normal in calibre.", "No aortic aneurysm.")))
    if "liver" in present:
        liver = []
        if f["fatty_liver"]:
            liver.append(_pick(rng, (
                "Diffusely decreased attenuation of the liver consistent with hepatic steatosis.",
                "The liver is diffusely hypoattenuating, in keeping with hepatic steatosis.")))
        else:
            liver.append(_pick(rng, ("The liver is normal in size and attenuation.",
                                     "Normal liver size and attenuation.")))
        liver += [lesion_sentence(rng, les) for les in lesions_by.get("liver", [])]
        if not lesions_by.get("liver"):
            liver.append(_pick(rng, ("No focal hepatic lesion.", "No focal liver lesion.")))
        lines.append(" ".join(liver))
    if "gallbladder" in present:
        lines.append(_pick(rng, ("The gallbladder is unremarkable.", "Unremarkable gallbladder.")))
    elif f.get("cholecystectomy"):
        lines.append(_pick(rng, ("Status post cholecystectomy.", "The gallbladder has been removed.")))
    if "spleen" in present:
        les = [lesion_sentence(rng, x) for x in lesions_by.get("spleen", [])]
        lines.append(" ".join(["The spleen is normal in size."] + (les or ["No focal splenic lesion."])))
    if "pancreas" in present:
        lines.append(_pick(rng, ("The pancreas is unremarkable.", "Normal pancreas.")))
    if present & {"kidney_left", "kidney_right"}:
        les = [lesion_sentence(rng, x) for o in ("kidney_left", "kidney_right") for x in lesions_by.get(o, [])]
        base = ("The kidneys show normal corticomedullary enhancement." if art else
                _pick(rng, ("The kidneys are normal in size. No hydronephrosis.",
                            "No hydronephrosis or renal calculus.")))
        lines.append(" ".join([base] + (les or ["No focal renal lesion."])))
    if present & {"stomach", "small_bowel", "colon"}:
        lines.append(_pick(rng, ("Bowel loops are normal in calibre without wall thickening.",
                                 "No bowel obstruction or wall thickening.")))
    if "urinary_bladder" in present:
        lines.append(_pick(rng, ("The urinary bladder is unremarkable.", "Unremarkable urinary bladder.")))
    lines.append(_pick(rng, ("No aggressive osseous lesion.", "The visualised bones are unremarkable.")))
    return lines


def write_report(findings: dict, rng: np.random.Generator) -> str:
    """A radiology report (EXAMINATION, FINDINGS, IMPRESSION) stating exactly ``findings``."""
    f = findings
    present = set(f.get("structures", []))
    region = _region_words(f["body_region"])
    if f["contrast_phase"] == "arterial":
        exam = _pick(rng, ("CT of the {r} in the arterial phase.", "Contrast-enhanced CT of the {r}, arterial phase.",
                           "CT {r} with intravenous contrast, arterial phase."))
    else:
        exam = _pick(rng, ("Non-contrast CT of the {r}.", "CT of the {r}, non-contrast.",
                           "CT {r} without intravenous contrast (non-contrast)."))
    exam = exam.format(r=region)
    tech = f"Axial images at {f['slice_thickness_mm']:.1f} mm slice thickness."
    lesions_by: dict[str, list] = {}
    for les in f["lesions"]:
        lesions_by.setdefault(les["organ"], []).append(les)
    body = " ".join(_organ_lines(rng, f, present, lesions_by))
    impression = []
    if f["fatty_liver"]:
        impression.append("Hepatic steatosis.")
    for les in f["lesions"]:
        impression.append(IMPRESSION_WORDS[les["kind"]].format(d=f"{les['diameter_mm']:.0f}", loc=les["location"]))
    if not impression:
        impression.append(_pick(rng, (f"No acute abnormality in the {region}.", "Unremarkable examination.",
                                      "No significant abnormality.")))
    imp = " ".join(f"{i + 1}. {s}" for i, s in enumerate(impression)) if len(impression) > 1 else impression[0]
    return f"EXAMINATION: {exam} {tech}\nFINDINGS: {body}\nIMPRESSION: {imp}"
