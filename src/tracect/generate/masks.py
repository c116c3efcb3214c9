"""Masks that users actually have: validated, remapped to the model's vocabulary, given a body.

Partial masks (a few organs labelled) are accepted: unlabelled tissue inside the body envelope becomes
``body``, which the model renders as generic soft tissue and fat; organs that are not labelled are not
drawn on purpose (the model may still hint at them where the training data always had them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tracect.data.body import envelope_from_organs
from tracect.io.volume import Volume
from tracect.labels.vocabulary import Vocabulary, build_remap

MAX_TILT_DEG = 30.0  # steeper than any gantry tilt: the slices are not axial


class MaskError(ValueError):
    """A mask that cannot drive generation; the message says why and what to do."""


@dataclass
class GenerationMask:
    """``source``: the mask as given (its grid is the output grid); ``labels``: canonical
    ``(Z, Y, X)`` model-vocabulary ids with a body envelope; ``notes``: what was done to it."""

    source: Volume
    labels: Volume
    notes: list[str] = field(default_factory=list)


def slice_tilt_deg(volume: Volume) -> float:
    """Angle between the canonical slice axis and the patient's superior-inferior axis, degrees."""
    can = volume.canonical()
    z = can.affine[:3, 0] / np.linalg.norm(can.affine[:3, 0])
    return float(np.degrees(np.arccos(min(1.0, abs(z[2])))))


def _given_body(body: Volume, mask: Volume) -> np.ndarray:
    """``body``'s nonzero voxels on the canonical grid of ``mask`` (the same grid, in any axis order)."""
    from tracect.io.pairing import GridMismatchError, canonical_pair

    try:
        _, b = canonical_pair(mask, body, ("mask", "body mask"))
    except GridMismatchError as e:
        raise MaskError(f"{e}; resample it onto the mask's grid first") from None
    return np.asarray(b.array) > 0


def prepare_mask(mask: Volume, source_vocab: Vocabulary, model_vocab: Vocabulary,
                 body: Volume | None = None) -> GenerationMask:
    """Validate and convert a user's mask for generation; raises :class:`MaskError`.

    The body (where unlabelled voxels are tissue rather than air): ``body`` (nonzero voxels; on the
    mask's grid), e.g. ``tracect label``'s labels of the user's own CT; else the mask's own body
    label; else an envelope estimated from its organs (:func:`~tracect.data.body.envelope_from_organs`).
    The notes say which."""
    if mask.array.ndim != 3:
        raise MaskError(f"mask must be 3D; got shape {mask.array.shape}")
    arr = mask.array
    if np.issubdtype(arr.dtype, np.floating) and not np.array_equal(arr, np.rint(arr)):
        raise MaskError("mask holds non-integer values; is it an image instead of a label mask?")
    unknown = source_vocab.unknown_ids(arr)
    if unknown:
        raise MaskError(f"labels {unknown} are not in vocabulary '{source_vocab.name}'; pass the right "
                        "--vocabulary or a remap table")
    if not np.any(arr):
        raise MaskError("mask is empty: nothing to generate from")
    tilt = slice_tilt_deg(mask)
    if tilt > MAX_TILT_DEG:
        raise MaskError(f"the mask's slices are {tilt:.0f} degrees from axial; tracect generates axial "
                        "slices: resample the mask to an axial grid first")
    notes = list(mask.meta.get("notes", []))  # what reading did to it (organ files merged or ignored)
    canon = mask.canonical()
    remap = build_remap(source_vocab, model_vocab)
    labels = remap(canon.array)
    notes.extend(remap.describe(np.unique(canon.array)))
    if "body" in model_vocab.labels.values():
        body_id = model_vocab.id_of("body")
        if body is not None:
            given = _given_body(body, mask)
            labels[labels == body_id] = 0
            labels[(labels == 0) & given] = body_id
            outside = int(((labels > 0) & (labels != body_id) & ~given).sum())
            notes.append(f"body: the given body mask ({body.meta.get('source') or 'in memory'})"
                         + (f"; {outside} labelled voxels lie outside it" if outside else ""))
        elif not np.any(labels == body_id):
            env = envelope_from_organs(labels > 0, canon.spacing)
            labels[(labels == 0) & env] = body_id
            notes.append("the mask has no body label: a body envelope was estimated (each slice's organ "
                         "hull grown by the margin measured around a real `total` mask; --body FILE gives "
                         "one instead)")
    present = sorted({model_vocab.labels[int(i)] for i in np.unique(labels) if i})
    notes.append(f"labels used: {', '.join(present)}")
    return GenerationMask(mask, Volume(labels.astype(np.uint8), canon.affine, dict(mask.meta)), notes)

