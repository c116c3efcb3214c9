"""Radiology reports of a dataset: ``reports.csv`` (CT-RATE or ``case,report``) or ``reports.jsonl``.

CT-RATE style columns ``VolumeName``, ``Findings_EN``, ``Impressions_EN`` become one text
``"FINDINGS: ... IMPRESSION: ..."``; the case id is ``VolumeName`` without its folder and file suffix.
Tables come from elsewhere: text must be UTF-8, a case id must be a plain name (it becomes a folder
name in the training cache), and every problem is a :class:`ReportsError` naming the file.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from tracect.utils.jsonl import iter_jsonl


class ReportsError(ValueError):
    """A reports file that cannot be parsed (message names the file, line and reason)."""


def case_id_from_name(name: str) -> str:
    """``train_1_a_1.nii.gz`` -> ``train_1_a_1``; folder names and bare ids pass unchanged."""
    name = Path(name).name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".npz"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")


def _decode(path: Path) -> str:
    data = path.read_bytes()
    if data.startswith(UTF16_32_BOMS):
        raise ReportsError(f"{path.name}: not UTF-8 but UTF-16 or UTF-32 text (byte order mark); save it as UTF-8")
    if b"\x00" in data:  # valid UTF-8 as far as the codec cares, but each letter followed by NULs
        raise ReportsError(f"{path.name}: holds NUL bytes, as UTF-16 or UTF-32 text does; save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ReportsError(f"{path.name}: not UTF-8 text (byte {e.start}: {data[e.start:e.start + 1]!r}); "
                           "save it as UTF-8") from None


def _join(findings: str, impression: str) -> str:
    parts = []
    if findings.strip():
        parts.append(f"FINDINGS: {findings.strip()}")
    if impression.strip():
        parts.append(f"IMPRESSION: {impression.strip()}")
    return "\n".join(parts)


def _plain_case(path: Path, line: int, case: str) -> str:
    if not case:
        raise ReportsError(f"{path.name}:{line}: empty case id")
    if "/" in case or "\\" in case or case in (".", ".."):
        raise ReportsError(f"{path.name}:{line}: case id '{case[:80]}' is not a plain name")
    return case


def read_reports_csv(path: Path) -> dict[str, str]:
    text = _decode(path)
    try:
        rows = list(csv.DictReader(io.StringIO(text)))
    except csv.Error as e:
        raise ReportsError(f"{path.name}: malformed CSV ({e})") from None
    if not rows:
        return {}
    cols = set(rows[0])
    reports: dict[str, str] = {}
    for line, row in enumerate(rows, start=2):
        if None in row:
            raise ReportsError(f"{path.name}:{line}: more fields than the header has")
        if {"VolumeName", "Findings_EN"} <= cols or {"VolumeName", "Impressions_EN"} <= cols:
            case = case_id_from_name(row["VolumeName"] or "")
            text_ = _join(row.get("Findings_EN") or "", row.get("Impressions_EN") or "")
        elif {"case", "report"} <= cols:
            case, text_ = (row["case"] or "").strip(), (row["report"] or "").strip()
        else:
            raise ReportsError(f"{path.name}: columns {sorted(cols)}; expected 'case,report' or "
                               "'VolumeName,Findings_EN,Impressions_EN'")
        case = _plain_case(path, line, case)
        if case in reports and reports[case] != text_:
            raise ReportsError(f"{path.name}:{line}: case '{case}' has two different reports")
        reports[case] = text_
    return reports


def read_reports_jsonl(path: Path) -> dict[str, str]:
    reports: dict[str, str] = {}
    try:
        for line, obj in iter_jsonl(path, ReportsError):
            case = obj.get("case")
            if not isinstance(case, str):
                raise ReportsError(f"{path.name}:{line}: expected an object with a string 'case'")
            texts = {k: obj.get(k) for k in ("report", "findings", "impression")}
            wrong = sorted(k for k, v in texts.items() if v is not None and not isinstance(v, str))
            if wrong:
                raise ReportsError(f"{path.name}:{line}: {wrong} must be text")
            report = texts["report"]
            if report is None:
                report = _join(texts["findings"] or "", texts["impression"] or "")
            reports[_plain_case(path, line, case)] = report
    except (RecursionError, ValueError) as e:  # nesting too deep, numbers too long for Python
        if isinstance(e, ReportsError):
            raise
        raise ReportsError(f"{path.name}: invalid JSON ({type(e).__name__}: {str(e)[:120]})") from None
    return reports


def read_reports(dataset: Path) -> dict[str, str]:
    """Reports of a dataset folder keyed by case id; ``{}`` when it has none."""
    csv_path, jsonl_path = dataset / "reports.csv", dataset / "reports.jsonl"
    if csv_path.is_file() and jsonl_path.is_file():
        raise ReportsError(f"{dataset.name}: both reports.csv and reports.jsonl exist; keep one")
    if csv_path.is_file():
        return read_reports_csv(csv_path)
    if jsonl_path.is_file():
        return read_reports_jsonl(jsonl_path)
    return {}
