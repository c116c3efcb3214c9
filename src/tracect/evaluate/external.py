"""TotalSegmentator as the evaluation segmenter, when the user has it and its weights installed.

tracect never installs it and never downloads weights: selecting it without both is an error that says
what is missing. Its 117 labels are remapped to the tracect vocabulary before scoring.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np


def _weights_folder() -> Path:
    home = os.environ.get("TOTALSEG_HOME_DIR")
    return Path(home) if home else Path.home() / ".totalsegmentator"


class TotalSegmentatorSegmenter:
    name = "totalsegmentator"

    def __init__(self):
        from tracect.data.grid import PrepareConfig
        from tracect.evaluate.entries import EvaluationError
        from tracect.labels.vocabulary import get_vocabulary

        exe = shutil.which("TotalSegmentator") or shutil.which("totalsegmentator")
        if exe is None:
            raise EvaluationError("--segmenter totalsegmentator: the TotalSegmentator command is not installed "
                                  "(tracect does not install it); use a tracect segmenter instead")
        weights = _weights_folder() / "nnunet" / "results"
        if not weights.is_dir() or not any(weights.iterdir()):
            raise EvaluationError(f"--segmenter totalsegmentator: no weights under {weights} (tracect never "
                                  "downloads weights; install them with TotalSegmentator itself first)")
        self.exe, self.path = exe, Path(exe)
        prepare = PrepareConfig(size=128)  # its networks work at 1.5-3 mm: give it a finer grid than 64
        self.vocab = get_vocabulary("tracect")
        self.info = {"prepare": prepare.to_json(), "vocabulary": self.vocab.to_json(), "reference_dice": None}
        self.config = type("C", (), {"size": prepare.size})()

    def predict(self, unit: np.ndarray, affine: np.ndarray | None = None) -> np.ndarray:
        """Labels (tracect vocabulary) of a volume in [-1, 1] on a grid with ``affine``."""
        from tracect.data.grid import unit_to_hu
        from tracect.io.readers import read_mask, write_volume
        from tracect.io.volume import Volume
        from tracect.labels.vocabulary import build_remap, total

        window = tuple(self.info["prepare"]["hu_window"])
        affine = np.eye(4) if affine is None else affine
        with tempfile.TemporaryDirectory() as tmp:
            ct, seg = Path(tmp) / "ct.nii.gz", Path(tmp) / "seg.nii.gz"
            write_volume(Volume(unit_to_hu(unit, window).astype(np.int16), affine), ct)
            subprocess.run([self.exe, "-i", str(ct), "-o", str(seg), "--ml"], check=True,
                           stdout=subprocess.DEVNULL)
            labels = read_mask(seg).canonical()
        return build_remap(total(), self.vocab)(labels.array).astype(np.uint8)
