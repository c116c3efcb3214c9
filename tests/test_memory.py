"""Long runs stay flat: 100 volumes in one process hold no more memory and no more files than 10."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from test_batch import ENV, one_thread, train_tiny  # noqa: F401 (fixture)

# Runs in a fresh interpreter so that nothing the test process has loaded or cached counts.
SCRIPT = r"""
import gc, json, os, sys
from pathlib import Path

sys.path.insert(0, sys.argv[4])
from conftest import toy_case
from tracect.generate.outputs import write_outputs
from tracect.generate.pipeline import Generator
from tracect.io import Volume

def rss():  # resident set size, bytes
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def fds():
    return len(os.listdir("/proc/self/fd"))

gen = Generator.from_checkpoint(sys.argv[1], device="cpu")
out, n = Path(sys.argv[2]), int(sys.argv[3])
marks = {}
for i in range(1, n + 1):
    # masks of varying length, as in a real cohort
    _, mask, affine = toy_case(seed=i, n_slices=3 + i % 4, size=16)
    result = gen.generate(Volume(mask, affine), "Liver normal.", seed=i)
    write_outputs(result, out / f"v{i:03d}.nii.gz")
    del result
    if i in (1, 10, n):
        gc.collect()
        marks[i] = {"rss": rss(), "fds": fds()}
print(json.dumps(marks))
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("tiny"))


def test_memory_and_file_handles_stay_flat_over_100_volumes(run_dir, tmp_path):
    tests = Path(__file__).resolve().parent
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(run_dir), str(tmp_path / "out"), "100", str(tests)],
                       capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    marks = {int(k): v for k, v in json.loads(r.stdout.strip().splitlines()[-1]).items()}
    mib = {k: round(v["rss"] / 2 ** 20, 1) for k, v in marks.items()}
    assert marks[100]["rss"] <= 1.05 * marks[10]["rss"], f"RSS MiB after 1, 10, 100 volumes: {mib}"
    assert marks[100]["fds"] <= marks[10]["fds"], f"open files: {marks}"
    assert len(list((tmp_path / "out").glob("v*.nii.gz"))) == 100
