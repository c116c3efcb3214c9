"""How far does one finding move a report's text embedding? Pooled MiniLM cosine similarity.

For every case of a phantom dataset (``findings.jsonl``), the phantom's report writer writes the case's
report twice from one random stream, with one finding changed: arterial vs non-contrast, and fatty vs
normal liver. Printed: the median cosine similarity of each pair's pooled embeddings (the mean of the
word-piece embeddings the model reads, ``TextEncoder``), beside that of the reports of two different
cases (consecutive pairs), the yardstick of how far apart reports lie at all.

    PYTHONPATH=src python scripts/report_embedding_similarity.py HELDOUT
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from tracect.model.text import TextEncoder
from tracect.phantom.reports import write_report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset", help="a phantom dataset folder (with findings.jsonl)")
    args = ap.parse_args()
    findings = [json.loads(x) for x in (Path(args.dataset) / "findings.jsonl").read_text().splitlines() if x]
    text = TextEncoder(max_tokens=256)

    def report(f):
        return write_report(f, np.random.default_rng(1))

    def cosine(a: str, b: str) -> float:
        _, pooled = text.encode([a, b])
        return float(torch.nn.functional.cosine_similarity(pooled[0], pooled[1], dim=0))

    phase = [cosine(report(dict(f, contrast_phase="arterial")), report(dict(f, contrast_phase="non-contrast")))
             for f in findings]
    fatty = [cosine(report(dict(f, fatty_liver=True)), report(dict(f, fatty_liver=False))) for f in findings]
    other = [cosine(report(findings[i]), report(findings[i + 1])) for i in range(0, len(findings) - 1, 2)]
    print(f"arterial vs non-contrast, same case (n={len(phase)}): median {np.median(phase):.3f}, min {min(phase):.3f}")
    print(f"fatty vs normal liver, same case (n={len(fatty)}): median {np.median(fatty):.3f}, min {min(fatty):.3f}")
    print(f"two different cases (n={len(other)}): median {np.median(other):.3f}")


if __name__ == "__main__":
    main()
