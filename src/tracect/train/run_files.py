"""What a training run keeps in its folder besides checkpoints: the metrics CSV (trimmed to the
checkpoint on resume), TensorBoard events, the progress bar, and the clean-up of what a killed run left.
Shared by the diffusion trainer and the autoencoder's."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from tracect.utils.atomic import atomic_path


class ProgressBar:
    """The training bar: steps out of ``max_steps``, or, when ``max_minutes`` bounds the run, training
    minutes out of the budget (a 5.5-minute run must not announce 6000 steps and an hour to go).
    ``state``: the trainer's ``TrainState`` (its ``step`` and ``elapsed_s``; not imported here, the
    trainer imports this module)."""

    def __init__(self, state, max_steps: int, max_minutes: float | None, disable: bool):
        from tqdm import tqdm

        self.budget = max_minutes * 60 if max_minutes else None
        if self.budget:
            self.bar = tqdm(total=round(self.budget), initial=round(min(state.elapsed_s, self.budget)),
                            desc=f"train ({max_minutes:g} min budget)", unit="s", disable=disable,
                            bar_format="{l_bar}{bar}| {n}/{total} s [{elapsed}<{remaining}{postfix}]")
        else:
            self.bar = tqdm(total=max_steps, initial=state.step, desc="train", unit="step", disable=disable)

    def advance(self, state) -> None:
        if self.budget:
            self.bar.update(max(0, round(min(state.elapsed_s, self.budget)) - self.bar.n))
        else:
            self.bar.update(1)

    def set_postfix(self, **kw) -> None:
        self.bar.set_postfix(**kw)

    def close(self) -> None:
        self.bar.close()


_CHECKPOINT_FILES = ("model.safetensors", "ema.safetensors", "optimizer.safetensors", "rng.safetensors",
                     "trainer.json", "config.json")


def remove_leftovers(run_dir: Path) -> list[Path]:
    """Remove what a killed run leaves behind in its folder -> the paths removed.

    Every file of a run is written under a temporary name (``.NAME.tmp-XXXXXXXX...``) and renamed into
    place; a process killed meanwhile leaves that temporary behind. A checkpoint folder is renamed into
    place whole, so one that lacks files is an old checkpoint whose removal was cut short.
    """
    removed = []
    places = [run_dir, run_dir / "checkpoints", run_dir / "samples"]
    for place in places:
        for path in sorted(place.glob(".*.tmp-*")) if place.is_dir() else ():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(path)
    latest = run_dir / "latest"
    current = latest.read_text().strip() if latest.is_file() else None
    for ckpt in sorted((run_dir / "checkpoints").glob("step_*")):
        if ckpt.is_dir() and ckpt.name != current and not all((ckpt / f).is_file() for f in _CHECKPOINT_FILES):
            shutil.rmtree(ckpt)
            removed.append(ckpt)
    return removed


def tensorboard_writer(run_dir: Path, step: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed: CSV only
        return None
    # a resumed run logs the steps after its checkpoint again: drop the earlier session's copies
    return SummaryWriter(str(run_dir / "tensorboard"), purge_step=step + 1 if step else None)


def append_metrics(path: Path, row: dict, fieldnames: tuple[str, ...]) -> None:
    """Append ``row`` to the run's ``metrics.csv`` (the header first when the file is new)."""
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fieldnames)
        if new:
            w.writeheader()
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def trim_metrics(path: Path, step: int, fieldnames: tuple[str, ...]) -> None:
    """Keep the rows logged up to the checkpoint a run resumes from (later ones will be logged again);
    a row cut short by a kill has missing fields and goes too. Rewritten atomically."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        # a column the file lacks (a run begun by an older version) stays empty in its old rows
        kept = [k for k in fieldnames if k in (reader.fieldnames or ())]
        rows = [r for r in reader
                if None not in r and all(r.get(k) for k in kept) and r["step"].isdigit()
                and int(r["step"]) <= step]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fieldnames)
        w.writeheader()
        w.writerows(rows)
