"""``tracect prepare``: a dataset folder -> a memory-mapped training cache.

Per case: read CT and mask, validate, reorient to the canonical ``(Z, Y, X)`` layout, crop to the
body, resample (CT trilinear with anti-aliasing, masks nearest), window HU to [-1, 1], remap labels to
the model's vocabulary (tissue inside the body without an organ label becomes ``body``), and compute
the optical flow between every pair of neighbouring slices. Cache layout (see docs/data.md)::

    CACHE/config.json                    the PrepareConfig (a different one refuses to mix in)
    CACHE/cases/CASE/image.npy           float16 (Z, H, W) in [-1, 1]
    CACHE/cases/CASE/mask.npy            uint8   (Z, H, W) model-vocabulary ids
    CACHE/cases/CASE/body.npy            uint8   (Z, H, W) 1 inside the body
    CACHE/cases/CASE/flow.npy            float16 (Z-1, 2, H, W) px, slice k -> k+1 (tracect.data.flow)
    CACHE/cases/CASE/lesion.npy          uint8   (Z, H, W) lesion kind codes (tracect.data.lesions);
                                         only for cases whose dataset knows its lesions
    CACHE/cases/CASE/meta.json           geometry, report, provenance; written last
    CACHE/index.json                     the cases ready for training (name, slices, split)
    CACHE/manifest.json                  everything: config, cases, skipped cases with reasons

A case folder is built under a temporary name and renamed into place, so an interrupted run leaves
no half case; a rerun skips finished cases and produces the same cache.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tracect import __version__
from tracect.data.body import body_from_ct
from tracect.data.flow import slice_flows
from tracect.data.grid import (AIR_HU, PADDING_HU, PrepareConfig, hu_to_unit,  # noqa: F401 (re-exported)
                               output_grid, replace_padding, unit_to_hu)
from tracect.data.layout import CaseSource, Dataset, DatasetError, load_dataset
from tracect.data.lesions import lesion_map
from tracect.data.resample import resample_to_grid
from tracect.data.validate import CaseError, check_hu, check_pair
from tracect.io.readers import VolumeReadError, read_mask, read_volume
from tracect.io.volume import Volume
from tracect.labels.vocabulary import Vocabulary, build_remap, get_vocabulary, tissue
from tracect.utils.atomic import write_json


def pseudo_mask(image: Volume) -> tuple[Volume, dict]:
    """``tracect label``'s tissue pseudo-labels of ``image`` (vocabulary ``tissue``) on its grid (in the
    canonical axis order: the pair is matched in world coordinates), with their record
    (:func:`tracect.labels.pseudo.pseudo_labels`)."""
    from tracect.labels.pseudo import PseudoLabelConfig, pseudo_labels

    canonical = image.canonical()
    config = PseudoLabelConfig()
    ids, record = pseudo_labels(canonical.array, canonical.spacing, config)
    mask = canonical.with_array(ids)
    mask.meta["notes"] = ["no mask: tissue pseudo-labels from HU (tracect label)"]
    return mask, {"config": config.to_json(), "ml": record["ml"]}


def prepare_case(source: CaseSource, vocabulary: Vocabulary, config: PrepareConfig,
                 strict_labels: bool = False, pseudo_labels: bool = False) -> tuple[dict, dict]:
    """Validate and resample one case -> ``(arrays, meta)``; raises :class:`CaseError`.

    ``strict_labels``: refuse organ-folder files outside ``vocabulary`` instead of merging or ignoring
    them (:mod:`tracect.labels.organ_files`). ``pseudo_labels``: a case without a mask is labelled from
    its HU (:func:`pseudo_mask`, vocabulary ``tissue``, remapped to the model's like any other mask)
    instead of being skipped; ``meta["labels"]`` says which cases were."""
    case = source.case_id
    if source.image is None:
        raise CaseError(case, "mask without an image")
    if source.mask is None and not pseudo_labels:
        raise CaseError(case, "image without a mask (prepare --pseudo-labels labels such cases from HU)")
    pseudo = None
    try:
        image = read_volume(source.image)
        if source.mask is None:
            mask, pseudo = pseudo_mask(image)
            vocabulary = tissue()
        else:
            mask = read_mask(source.mask, vocabulary, strict=strict_labels)
    except VolumeReadError as e:
        raise CaseError(case, str(e)) from None
    # padding outside the field of view reads as air, as it would have been; the count goes in the warnings
    padded, n_padding = replace_padding(image.array)
    image = image.with_array(padded)
    check_hu(case, image.array)
    canon_img, canon_mask = check_pair(case, image, mask, vocabulary, config.min_slices)
    body_src = body_from_ct(canon_img.array, config.body_threshold) | (canon_mask.array > 0)
    affine, shape = output_grid(canon_img, body_src, config)
    if shape[0] < config.min_slices:
        raise CaseError(case, f"{shape[0]} slice(s) after resampling; at least {config.min_slices} needed")
    hu = resample_to_grid(canon_img, affine, shape, order=1, cval=AIR_HU).array
    labels = resample_to_grid(canon_mask, affine, shape, order=0, dtype=canon_mask.array.dtype).array
    body = resample_to_grid(Volume(body_src.astype(np.uint8), canon_img.affine), affine, shape,
                            order=0, dtype=np.uint8).array

    target = get_vocabulary(config.vocabulary)
    remap = build_remap(vocabulary, target)
    model_labels = remap(labels)
    if "body" in target.labels.values():
        model_labels[(model_labels == 0) & (body > 0)] = target.id_of("body")
    unit = hu_to_unit(hu, config.hu_window)
    flow = slice_flows(unit, config.flow)

    out = Volume(unit, affine)
    counts = np.bincount(model_labels.ravel(), minlength=target.num_classes)
    warnings = []
    if source.report is None:
        warnings.append("no report: trains with an empty report")
    if mask.meta.get("overlap_voxels"):
        warnings.append(f"{mask.meta['overlap_voxels']} voxels claimed by several organ files")
    warnings += mask.meta.get("notes", [])
    if n_padding:
        warnings.append(f"{n_padding} voxels of scanner padding (below {PADDING_HU:.0f} HU: outside the field of "
                        "view) read as air")
    meta = {
        "case": case, "split": source.split, "report": source.report or "",
        "n_slices": int(shape[0]), "shape": list(shape),
        "spacing": [float(s) for s in out.spacing],  # (z, y, x) mm
        "affine": out.affine.tolist(),  # canonical cache grid -> world RAS mm
        "z_mm": [float(v) for v in out.world(np.stack([np.arange(shape[0]), np.zeros(shape[0]),
                                                          np.zeros(shape[0])], 1))[:, 2]],
        "source": {"image": str(source.image), "mask": str(source.mask) if source.mask else None,
                   "shape": list(image.shape),
                   "spacing": list(image.spacing), "orientation": "".join(image.orientation),
                   "mask_orientation": "".join(mask.orientation), "format": image.meta.get("format"),
                   **({"organ_files": mask.meta["organ_files"]} if "organ_files" in mask.meta else {})},
        "label_voxels": {target.labels[i]: int(c) for i, c in enumerate(counts) if i and c},
        # where the labels came from, and what the remap to the model's vocabulary merged (routine, so
        # not a warning: TotalSegmentator's kidneys become `kidney`)
        "labels": {**({"kind": "pseudo", "vocabulary": "tissue", **pseudo} if pseudo is not None
                      else {"kind": "mask", "vocabulary": vocabulary.name}),
                   "remap": remap.describe(np.unique(labels))},
        "warnings": warnings, "config_digest": config.digest(), "tracect_version": __version__,
    }
    arrays = {"image": unit.astype(np.float16), "mask": model_labels.astype(np.uint8),
              "body": body.astype(np.uint8), "flow": flow.astype(np.float16)}
    if source.lesions:
        organs = [labels == vocabulary.id_of(les["organ"]) if les["organ"] in vocabulary.labels.values()
                  else np.ones(shape, bool) for les in source.lesions]
        arrays["lesion"] = lesion_map(shape, affine, source.lesions, organs)
        meta["lesions"] = [dict(les) for les in source.lesions]
    return arrays, meta


def _write_case(cases_dir: Path, arrays: dict, meta: dict) -> None:
    final = cases_dir / meta["case"]
    tmp = Path(tempfile.mkdtemp(prefix=f".{meta['case']}.tmp-", dir=cases_dir))
    try:
        for name, arr in arrays.items():
            np.save(tmp / f"{name}.npy", arr)
        write_json(tmp / "meta.json", meta)
        if final.exists():  # a stale folder from an older config
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _worker(source: CaseSource, vocabulary: Vocabulary, config: PrepareConfig, cases_dir: Path,
            strict_labels: bool = False, pseudo_labels: bool = False):
    try:
        arrays, meta = prepare_case(source, vocabulary, config, strict_labels, pseudo_labels)
    except CaseError as e:
        return source.case_id, None, e.problem
    except Exception as e:  # a reader bug must not lose the other cases
        return source.case_id, None, f"unexpected {type(e).__name__}: {e}"
    _write_case(cases_dir, arrays, meta)
    return source.case_id, meta, None


def is_done(cases_dir: Path, case_id: str, config: PrepareConfig) -> dict | None:
    meta_path = cases_dir / case_id / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return meta if meta.get("config_digest") == config.digest() else None


@dataclass
class PrepareResult:
    cache: Path
    prepared: list[dict] = field(default_factory=list)  # metas, freshly made or reused
    reused: int = 0
    skipped: list[dict] = field(default_factory=list)  # {"case", "problem"}
    warnings: list[str] = field(default_factory=list)


def load_datasets(datasets, allow_absolute: bool = False) -> tuple[Dataset, ...]:
    """One or several dataset folders (or :class:`Dataset` objects) whose cases go into one cache.

    Each keeps its own vocabulary and split (e.g. a phantom in ``total`` labels beside unlabelled real
    CT); case ids must be unique across them, since a case's folder in the cache is its id."""
    items = [datasets] if isinstance(datasets, (str, Path, Dataset)) else list(datasets)
    if not items:
        raise DatasetError("no dataset folder given")
    sets = tuple(d if isinstance(d, Dataset) else load_dataset(d, allow_absolute=allow_absolute) for d in items)
    seen: dict[str, Path] = {}
    for ds in sets:
        for c in ds.cases:
            if c.case_id in seen:
                raise DatasetError(f"case '{c.case_id}' is in both {seen[c.case_id]} and {ds.root}: "
                                   "case ids must be unique across the datasets of one cache (rename one)")
            seen[c.case_id] = ds.root
    return sets


def _roots(sets) -> str | list[str]:
    # one dataset: its path, as before; several: the list (readers accept both)
    roots = [str(ds.root.resolve()) for ds in sets]
    return roots[0] if len(roots) == 1 else roots


def prepare_dataset(dataset, out: str | Path, config: PrepareConfig = PrepareConfig(),
                    workers: int = 1, progress: bool = True, log=print, strict_labels: bool = False,
                    pseudo_labels: bool = False) -> PrepareResult:
    """Prepare every valid case of ``dataset`` (a folder, a :class:`Dataset`, or a list of them: see
    :func:`load_datasets`) into the cache ``out``; bad cases are skipped and listed. ``strict_labels``
    and ``pseudo_labels`` as in :func:`prepare_case`."""
    from tqdm import tqdm

    sets = load_datasets(dataset)
    out = Path(out)
    cases_dir = out / "cases"
    cases_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.json"
    if cfg_path.is_file():
        old = json.loads(cfg_path.read_text())
        if PrepareConfig.from_json(old["config"]) != config:
            raise ValueError(f"{out} was prepared with another config ({old.get('config')}); "
                             "use a new --out folder")
    source_vocab = [ds.vocabulary.to_json() for ds in sets]
    write_json(cfg_path, {"config": config.to_json(), "dataset": _roots(sets),
                          "vocabulary": source_vocab[0] if len(sets) == 1 else source_vocab,
                          "tracect_version": __version__})
    for stale in cases_dir.glob(".*.tmp-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)

    result = PrepareResult(out)
    todo = []  # (case, the vocabulary of its dataset's masks)
    for ds in sets:
        for source in ds.cases:
            meta = is_done(cases_dir, source.case_id, config)
            if meta is not None:
                result.prepared.append(meta)
                result.reused += 1
            else:
                todo.append((source, ds.vocabulary))
    bar = tqdm(total=len(todo), desc="prepare", unit="case", disable=not progress)
    outcomes = []
    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_worker, s, v, config, cases_dir, strict_labels, pseudo_labels)
                       for s, v in todo]
            for fut in as_completed(futures):
                outcomes.append(fut.result())
                bar.update()
    else:
        for s, v in todo:
            outcomes.append(_worker(s, v, config, cases_dir, strict_labels, pseudo_labels))
            bar.update()
    bar.close()
    for case, meta, problem in outcomes:
        if meta is None:
            result.skipped.append({"case": case, "problem": problem})
            log(f"skipped {case}: {problem}")
        else:
            result.prepared.append(meta)
    result.prepared.sort(key=lambda m: m["case"])
    result.skipped.sort(key=lambda s: s["case"])
    for meta in result.prepared:
        result.warnings += [f"{meta['case']}: {w}" for w in meta["warnings"]]

    index = [{"case": m["case"], "n_slices": m["n_slices"], "split": m["split"]} for m in result.prepared]
    write_json(out / "index.json", {"cases": index})
    write_json(out / "manifest.json", {
        "config": config.to_json(), "dataset": _roots(sets),
        "datasets": [{"root": str(ds.root.resolve()), "vocabulary": ds.vocabulary.to_json(),
                      "cases": [c.case_id for c in ds.cases]} for ds in sets],
        "vocabulary": get_vocabulary(config.vocabulary).to_json(),
        "source_vocabulary": source_vocab[0] if len(sets) == 1 else source_vocab, "tracect_version": __version__,
        "cases": result.prepared, "skipped": result.skipped, "warnings": result.warnings})
    return result
