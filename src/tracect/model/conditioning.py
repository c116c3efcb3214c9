"""Conditions of a batch of windows, and the guided denoise closure the sampler calls.

Training (with condition dropout), validation pictures, volume generation and the benchmarks all build
a :class:`WindowCondition` with :func:`build_condition`, so the network sees identical conditioning in
each. :func:`make_denoise` turns a model and a condition into the ``denoise(x_t, t)`` of
:func:`tracect.diffusion.sampler.ddim_sample`, with classifier-free guidance (Ho & Salimans 2022)
computed in one network call on a doubled batch: ``pred = pred_null + w * (pred_report - pred_null)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tracect.data.findings import report_vectors
from tracect.model.denoiser import FrameDenoiser, geometry_features
from tracect.model.text import TextEncoder
from tracect.runtime import autocast_context


@dataclass
class WindowCondition:
    """Conditioning of ``B`` windows of ``K`` frames (all tensors on the model's device).

    mask ``(B, K, H, W)`` long (``num_classes`` = dropped); tokens ``(B, L, D)``; pooled ``(B, D)``;
    null_tokens / null_pooled: the empty report (for guidance; ``None`` when not built); geometry
    ``(B, 5)``; known ``(B, K)`` bool; known_values ``(B, K, H, W)``; flow ``(B, K-1, 2, H, W)`` or None;
    findings ``(B, FINDINGS_DIM)`` and lesion ``(B, K, H, W)`` long kind codes, or None (a model without
    ``findings``). The empty report's findings and lesion map are zeros.
    """

    mask: torch.Tensor
    tokens: torch.Tensor
    pooled: torch.Tensor
    geometry: torch.Tensor | None
    known: torch.Tensor | None = None
    known_values: torch.Tensor | None = None
    flow: torch.Tensor | None = None
    null_tokens: torch.Tensor | None = None
    null_pooled: torch.Tensor | None = None
    findings: torch.Tensor | None = None
    lesion: torch.Tensor | None = None

    def _report_parts(self, with_report: bool) -> tuple:
        if with_report:
            return self.tokens, self.pooled, self.findings, self.lesion
        zero = lambda v: None if v is None else torch.zeros_like(v)  # noqa: E731
        return self.null_tokens, self.null_pooled, zero(self.findings), zero(self.lesion)

    def inputs(self, with_report: bool = True) -> tuple:
        """The model's arguments after ``x_t`` and ``t``: mask, tokens, pooled, geometry, known,
        known_values, flow, findings, lesion (``with_report=False``: the empty report's)."""
        tokens, pooled, findings, lesion = self._report_parts(with_report)
        return (self.mask, tokens, pooled, self.geometry, self.known, self.known_values, self.flow,
                findings, lesion)

    def guided_inputs(self) -> tuple:
        """The model's arguments for the report and the empty report in one doubled batch ``(2B, ...)``:
        rows ``0..B-1`` with the report, rows ``B..2B-1`` without."""
        def twice(v):
            return None if v is None else torch.cat([v, v])

        def both(v, null):
            return None if v is None else torch.cat([v, null])

        _, _, null_findings, null_lesion = self._report_parts(False)
        return (twice(self.mask), torch.cat([self.tokens, self.null_tokens]),
                torch.cat([self.pooled, self.null_pooled]), twice(self.geometry), twice(self.known),
                twice(self.known_values), twice(self.flow), both(self.findings, null_findings),
                both(self.lesion, null_lesion))


def build_condition(text: TextEncoder, mask: torch.Tensor, reports: list[str], spacing: torch.Tensor,
                    position: torch.Tensor, device, *, known=None, known_values=None, flow=None,
                    null: bool = False, num_classes: int | None = None, drop_report=None, drop_mask=None,
                    drop_geometry=None, findings: bool = False, lesion=None) -> WindowCondition:
    """The conditioning of ``B`` windows.

    mask ``(B, K, H, W)`` ids, or ``(B, K, L, h, w)`` label fractions (a latent model); reports ``B`` texts; spacing ``(B, 3)`` mm (z, y, x); position ``(B, K)``
    relative slice positions in [0, 1]; known ``(B, K)`` bool with known_values ``(B, K, H, W)``; flow
    ``(B, K-1, 2, H, W)`` px. ``null``: also encode the empty report (classifier-free guidance).

    ``findings``: also the reports' findings vectors (:func:`tracect.data.findings.report_vectors`)
    and ``lesion`` ``(B, K, H, W)`` kind codes (:mod:`tracect.data.lesions`; None: no lesion map),
    for a model with ``findings``.

    Condition dropout (training): ``drop_report`` / ``drop_mask`` / ``drop_geometry`` ``(B,)`` bool
    replace a row's report by the empty one (its findings and lesion map with it), its mask by the id
    ``num_classes`` ("no mask"), and zero its geometry vector (present flag included).
    """
    if drop_report is not None:
        reports = ["" if d else r for d, r in zip(drop_report.tolist(), reports)]
        if lesion is not None:
            lesion = torch.where(drop_report.reshape(-1, *([1] * (lesion.ndim - 1))), 0, lesion)
    vectors = torch.from_numpy(report_vectors(list(reports))) if findings else None
    if findings and lesion is None and not mask.is_floating_point():
        lesion = torch.zeros(mask.shape, dtype=torch.long)  # a pixel model: no lesion placed
    if not findings or mask.is_floating_point():  # a latent model takes no lesion map
        lesion = None
    if drop_mask is not None:
        if num_classes is None:
            raise ValueError("drop_mask needs num_classes (the id of a dropped mask)")
        if mask.is_floating_point():  # label fractions (B, K, L, ...): all of the pixel is "no mask"
            dropped = torch.zeros_like(mask)
            dropped[:, :, num_classes] = 1.0
        else:
            dropped = torch.full_like(mask, num_classes)
        mask = torch.where(drop_mask.reshape(-1, *([1] * (mask.ndim - 1))), dropped, mask)
    tokens, pooled = text.encode(list(reports))
    geometry = geometry_features(spacing[:, 1], spacing[:, 0], position[:, 0], position[:, -1],
                                 None if drop_geometry is None else ~drop_geometry)
    null_t = null_p = None
    if null:
        null_t, null_p = text.encode([""] * len(reports))
    to = lambda v: None if v is None else v.to(device)  # noqa: E731
    mask = mask if mask.is_floating_point() else mask.long()
    return WindowCondition(to(mask), to(tokens), to(pooled), to(geometry), to(known), to(known_values),
                           to(flow), to(null_t), to(null_p), to(vectors), None if lesion is None else to(lesion.long()))


def make_denoise(model: FrameDenoiser, cond: WindowCondition, timesteps: int, autocast=None,
                 guidance: float = 1.0, lesion_guidance: float | None = None):
    """``denoise(x_t, t) -> prediction`` for :func:`tracect.diffusion.sampler.ddim_sample`.

    ``t`` is the schedule time in [0, 1]; the network receives ``t * timesteps``. ``autocast`` is a
    context-manager factory (bf16 on GPUs) or None. With guidance the report-conditioned and the
    unconditioned predictions come from one call on the doubled batch (``cond`` needs ``null``).
    ``lesion_guidance``: the weight inside the lesion map's pixels instead of ``guidance`` (a pixel
    model with findings; None: ``guidance`` everywhere).
    """
    weight = guidance
    if lesion_guidance is not None and lesion_guidance != guidance and cond.lesion is not None:
        inside = (cond.lesion > 0).float()  # (B, K, H, W), the shape of a pixel model's prediction
        weight = guidance + (lesion_guidance - guidance) * inside
    plain = not torch.is_tensor(weight) and weight == 1.0
    if not plain and cond.null_tokens is None:
        raise ValueError("guidance needs the empty report's encoding: build_condition(..., null=True)")
    guided = None if plain else cond.guided_inputs()

    def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with autocast_context(autocast):
            if guided is None:
                return model(x_t, t * timesteps, *cond.inputs()).float()
            both = model(torch.cat([x_t, x_t]), torch.cat([t, t]) * timesteps, *guided).float()
        with_report, without = both.chunk(2)
        return without + weight * (with_report - without)

    return denoise
