"""Shared fixtures: the real TotalSegmentator case and small synthetic datasets."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL_DIR = ROOT.parent / "shared" / "data" / "totalseg-example"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def real_dir() -> Path:
    if not (REAL_DIR / "ct.nii.gz").is_file():
        pytest.skip(f"real example case not found at {REAL_DIR} (../shared/data/totalseg-example)")
    return REAL_DIR


def link_real_case(root: Path, real_dir: Path, case: str = "s0011", report: str | None = None) -> Path:
    """A dataset folder holding the real case (symlinks, nothing copied) and optionally its report."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    (root / "images" / f"{case}.nii.gz").symlink_to(real_dir / "ct.nii.gz")
    (root / "masks" / f"{case}.nii.gz").symlink_to(real_dir / "seg.nii.gz")
    if report is not None:
        import json

        (root / "reports.jsonl").write_text(json.dumps({"case": case, "report": report}) + "\n")
    return root


def save_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def toy_case(n_slices: int = 12, size: int = 32, seed: int = 0, spacing=(4.0, 4.0, 3.0)):
    """A tiny torso-like CT (HU, RAS, shape (X, Y, Z)) and its `total` mask: body ellipse, a liver
    blob on the patient's right, a spine (vertebra L1) posteriorly."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(np.arange(size), np.arange(size), np.arange(n_slices), indexing="ij")
    c = (size - 1) / 2
    body = ((x - c) / (size * 0.4)) ** 2 + ((y - c) / (size * 0.3)) ** 2 < 1
    # RAS: x grows toward the patient's right, y toward anterior
    liver = ((x - c - size * 0.15) / (size * 0.15)) ** 2 + ((y - c) / (size * 0.12)) ** 2 < 1
    spine = ((x - c) ** 2 + (y - c + size * 0.2) ** 2) < (size * 0.07) ** 2
    hu = np.full(x.shape, -1000.0)
    hu[body] = 40
    hu[body & liver] = 60
    hu[body & spine] = 400
    hu += rng.normal(0, 5, hu.shape)
    mask = np.zeros(x.shape, np.uint8)
    mask[body & liver] = 5  # liver
    mask[body & spine] = 31  # vertebrae_L1
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-c * spacing[0], -c * spacing[1], 0.0]
    return np.round(hu).astype(np.int16), mask, affine


def write_toy_dataset(root: Path, n_slices: int = 10, cases: int = 3) -> Path:
    """A dataset folder with ``cases`` valid toy cases (``n_slices``, ``n_slices + 1``, ...) and a reports.csv."""
    for i in range(cases):
        hu, mask, aff = toy_case(seed=i, n_slices=n_slices + i)
        save_nifti(root / "images" / f"case{i}.nii.gz", hu, aff)
        save_nifti(root / "masks" / f"case{i}.nii.gz", mask, aff)
    (root / "reports.csv").write_text(
        "case,report\n" + "".join(f'case{i},"Liver normal, case {i}."\n' for i in range(cases)))
    return root


def toy_cache_at(root: Path) -> Path:
    """Three toy cases (6-8 slices) prepared at 16 px under ``root``: 18 frame pairs."""
    from tracect.data.prepare import PrepareConfig, prepare_dataset

    ds = write_toy_dataset(root / "ds", n_slices=6)
    prepare_dataset(ds, root / "cache", PrepareConfig(size=16), progress=False)
    return root / "cache"


def single_thread():
    """Body of the modules' ``one_thread`` fixtures: tiny models gain nothing from threads, and on a
    busy shared machine idle-spinning threads make them many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def toy_dataset(tmp_path):
    """A dataset folder with three valid toy cases and a reports.csv."""
    return write_toy_dataset(tmp_path / "ds")


# the generation tests' tiny model (test_generate.py, test_grain.py)
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, real_dir):
    """A tiny model trained for a few steps on the real case (quality is not the point here)."""
    from tracect.config import load_config
    from tracect.data.prepare import PrepareConfig, prepare_dataset
    from tracect.train.trainer import Trainer

    root = link_real_case(tmp_path_factory.mktemp("gen") / "ds", real_dir)
    prepare_dataset(root, root.parent / "cache", PrepareConfig(size=16), progress=False)
    run = root.parent / "run"
    Trainer(load_config("tiny").replace(train={"max_steps": 4}), root.parent / "cache", run,
            progress=False).fit()
    return run


@pytest.fixture(scope="module")
def gen(tiny_run):
    from tracect.generate.pipeline import Generator

    return Generator.from_checkpoint(tiny_run, device="cpu")


@pytest.fixture(scope="module")
def real_mask(real_dir):
    from tracect.io import read_mask

    return read_mask(real_dir / "seg.nii.gz")
