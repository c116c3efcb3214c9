"""Checks on one case's inputs before it is prepared; each failure is one clear line."""

from __future__ import annotations

import numpy as np

from tracect.io.pairing import GridMismatchError, canonical_pair
from tracect.io.volume import Volume
from tracect.labels.vocabulary import Vocabulary


class CaseError(ValueError):
    """One case cannot be used; ``str()`` names the case and the problem in one line."""

    def __init__(self, case_id: str, problem: str):
        self.case_id, self.problem = case_id, problem
        super().__init__(f"{case_id}: {problem}")


def check_hu(case_id: str, hu: np.ndarray) -> None:
    """Refuse values that are not Hounsfield units of a CT.

    Raw detector values (0..4095 with RescaleSlope/Intercept not applied) have no air at about
    -1000 HU; a CT of a body always has some air (outside the body or in the lungs and bowel).
    """
    if hu.size == 0:
        raise CaseError(case_id, "image is empty")
    if not np.issubdtype(hu.dtype, np.number) or np.issubdtype(hu.dtype, np.complexfloating):
        raise CaseError(case_id, f"image dtype {hu.dtype} is not numeric")
    if np.issubdtype(hu.dtype, np.floating) and not np.all(np.isfinite(hu)):
        raise CaseError(case_id, "image holds NaN or infinite values")
    lo, hi = float(hu.min()), float(hu.max())
    if lo >= -200 and hi > 1000:
        raise CaseError(case_id, f"values {lo:.0f}..{hi:.0f} look like raw scanner numbers, not HU "
                                 "(no air near -1000); apply RescaleSlope/Intercept")
    if lo < -1100 - 1000 or hi > 32767:
        raise CaseError(case_id, f"values {lo:.0f}..{hi:.0f} are outside any plausible HU range")
    if hi - lo < 200:
        raise CaseError(case_id, f"values span only {lo:.0f}..{hi:.0f}; not a CT in HU")


def check_pair(case_id: str, image: Volume, mask: Volume, vocabulary: Vocabulary,
               min_slices: int) -> tuple[Volume, Volume]:
    """Geometry, labels and size checks of an image and its mask, stored in any axis order.

    The grids are compared in world coordinates (:func:`tracect.io.pairing.canonical_pair`); returns both
    in canonical ``(Z, Y, X)`` layout, the mask on the image's affine."""
    try:
        canon_img, canon_mask = canonical_pair(image, mask)
    except GridMismatchError as e:
        raise CaseError(case_id, str(e)) from None
    if not np.any(canon_mask.array):
        raise CaseError(case_id, "mask is empty (no labelled voxel)")
    unknown = vocabulary.unknown_ids(canon_mask.array)
    if unknown:
        raise CaseError(case_id, f"mask labels {unknown} are not in vocabulary '{vocabulary.name}'")
    if canon_img.shape[0] < min_slices:
        raise CaseError(case_id, f"{canon_img.shape[0]} axial slice(s); at least {min_slices} needed")
    return canon_img, canon_mask
