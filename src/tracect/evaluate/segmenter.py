"""The evaluation segmenter: a 2D MONAI BasicUNet trained on real slices of a prepared cache.

It answers "does the generated CT show the organs of its mask?" (Dice of its segmentation of the
generated volume against the conditioning mask) and supplies the slice features of the Fréchet
distance when no Inception weights are given. Its Dice on real held-out CTs (its own agreement with the
masks of real volumes, the yardstick of a generated volume's Dice) is saved beside its weights, and so
is the dataset it learned from: a segmenter that saw the generators' training volumes would favour
whatever the generators copy from them, so the benchmarks train it on another draw.

Files: ``DIR/segmenter.json`` (config, vocabulary, intensity window, training record, reference Dice)
and ``DIR/model.safetensors``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tracect.utils.atomic import atomic_path, write_json


@dataclass(frozen=True)
class SegmenterConfig:
    size: int = 64  # in-plane pixels (the cache's)
    num_classes: int = 17
    features: tuple[int, ...] = (16, 16, 32, 64, 128, 16)  # BasicUNet widths
    batch_size: int = 16
    lr: float = 1e-3
    max_steps: int = 3000
    max_minutes: float | None = 5.0
    seed: int = 0

    def to_json(self) -> dict:
        return asdict(self)


def resize2d(x: torch.Tensor, size: int) -> torch.Tensor:
    """Images ``(N, C, h, w)`` resized bilinearly to ``(N, C, size, size)`` (unchanged if already so):
    the one resampling every feature extractor and the segmenter apply to the slices they see."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def build_network(c: SegmenterConfig) -> torch.nn.Module:
    from monai.networks.nets import BasicUNet

    return BasicUNet(spatial_dims=2, in_channels=1, out_channels=c.num_classes, features=c.features)


class Segmenter:
    """A trained segmenter: :meth:`predict` labels, :meth:`features` slice embeddings."""

    name = "tracect-segmenter"

    def __init__(self, network: torch.nn.Module, config: SegmenterConfig, info: dict, path: Path | None = None):
        self.net, self.config, self.info, self.path = network.eval(), config, info, path

    @classmethod
    def load(cls, folder: str | Path) -> "Segmenter":
        from safetensors.torch import load_file

        folder = Path(folder)
        meta_path = folder / "segmenter.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{folder}: no segmenter.json; train one with `tracect segmenter train`")
        info = json.loads(meta_path.read_text())
        cfg = dict(info["config"])
        cfg["features"] = tuple(cfg["features"])
        config = SegmenterConfig(**cfg)
        net = build_network(config)
        net.load_state_dict(load_file(str(folder / "model.safetensors")))
        return cls(net, config, info, folder)

    @property
    def hu_window(self) -> tuple[float, float]:
        return tuple(self.info["prepare"]["hu_window"])

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        return resize2d(x, self.config.size)

    @torch.no_grad()
    def predict(self, unit: np.ndarray, affine: np.ndarray | None = None, batch: int = 32) -> np.ndarray:
        """Labels ``(Z, H, W)`` uint8 of a volume ``(Z, H, W)`` in [-1, 1] on a cache-like grid
        (``affine`` is not needed: the network sees slices as in training)."""
        out = []
        for s in range(0, len(unit), batch):
            x = torch.from_numpy(np.ascontiguousarray(unit[s:s + batch], dtype=np.float32))[:, None]
            logits = self.net(self._resize(x))
            if logits.shape[-2:] != x.shape[-2:]:
                logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
            out.append(logits.argmax(1).to(torch.uint8).numpy())
        return np.concatenate(out) if out else np.zeros((0,) + unit.shape[1:], np.uint8)

    @torch.no_grad()
    def features(self, images: np.ndarray, batch: int = 64) -> np.ndarray:
        """Embeddings ``(N, D)`` of 2D images ``(N, h, w)`` in [-1, 1] (resized to the training size)."""
        feats, net = [], self.net
        for s in range(0, len(images), batch):
            x = torch.from_numpy(np.ascontiguousarray(images[s:s + batch], dtype=np.float32))[:, None]
            # the encoder alone: its deepest block, pooled, is the slice embedding (no decoder needed)
            h = net.down_4(net.down_3(net.down_2(net.down_1(net.conv_0(self._resize(x))))))
            feats.append(h.mean((2, 3)).numpy().astype(np.float64))
        return np.concatenate(feats) if feats else np.zeros((0, self.config.features[4]))


def _load_split(cache, split: str | None) -> tuple[np.ndarray, np.ndarray]:
    images, masks = [], []
    for i, m in enumerate(cache.cases):
        if split is None or m["split"] == split:
            arr = cache.case(i)
            images.append(np.asarray(arr.image, np.float32))
            masks.append(np.asarray(arr.mask, np.int64))
    if not images:
        return np.zeros((0, 1, 1), np.float32), np.zeros((0, 1, 1), np.int64)
    return np.concatenate(images), np.concatenate(masks)


def reference_dice(seg: Segmenter, cache, split: str | None, names: dict[int, str]) -> dict:
    """Per-organ Dice of ``seg`` on the real CTs of ``split`` (each case's volume, averaged over cases)."""
    from tracect.evaluate.metrics import dice

    per = {n: [] for n in names.values()}
    for i, m in enumerate(cache.cases):
        if split is not None and m["split"] != split:
            continue
        arr = cache.case(i)
        pred = seg.predict(np.asarray(arr.image, np.float32))
        truth = np.asarray(arr.mask)
        for lab, name in names.items():
            if (truth == lab).sum() >= 20:
                per[name].append(dice(pred == lab, truth == lab))
    out = {n: float(np.mean(v)) for n, v in per.items() if v}
    if out:
        out["mean"] = float(np.mean(list(out.values())))
    return out


def organ_names(vocabulary) -> dict[int, str]:
    """Organ labels scored by the evaluation: every label but background and the body envelope."""
    return {i: n for i, n in vocabulary.labels.items() if i != 0 and n != "body"}


def train_segmenter(cache_root: str | Path, out: str | Path, config: SegmenterConfig = SegmenterConfig(),
                    progress: bool = True, log=print) -> Segmenter:
    """Train on the ``train`` split of a prepared cache (every case if it has no split); report Dice on
    ``test`` (else ``val``) cases, or on the training cases themselves when there are no others (the
    record says which)."""
    from monai.losses import DiceCELoss
    from safetensors.torch import save_file
    from tqdm import tqdm

    from tracect.data.cache import PreparedCache

    out = Path(out)
    cache = PreparedCache(cache_root)
    if cache.config.size != config.size or cache.vocabulary.num_classes > config.num_classes:
        config = SegmenterConfig(**{**config.to_json(), "size": cache.config.size,
                                    "num_classes": max(config.num_classes, cache.vocabulary.num_classes)})
    splits = {m["split"] for m in cache.cases}
    if config.size < 32:
        raise ValueError(f"the segmenter halves its input four times: it needs slices of >= 32 px, the cache has {config.size}")
    images, masks = _load_split(cache, "train" if "train" in splits else None)
    if len(images) == 0:
        raise ValueError(f"{cache_root}: no cases to train the segmenter on")
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    net = build_network(config)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=1e-4)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    x_all, y_all = torch.from_numpy(images), torch.from_numpy(masks)
    t0, step = time.perf_counter(), 0
    bar = tqdm(total=config.max_steps, desc="segmenter", unit="step", disable=not progress)
    net.train()
    while step < config.max_steps:
        idx = torch.randint(0, len(x_all), (config.batch_size,), generator=gen)
        x, y = x_all[idx][:, None], y_all[idx][:, None]
        # generated CTs differ from real ones in texture and contrast: train on jittered intensities
        scale = 1 + 0.1 * (torch.rand(len(x), 1, 1, 1, generator=gen) - 0.5)
        shift = 0.05 * (torch.rand(len(x), 1, 1, 1, generator=gen) - 0.5)
        x = x * scale + shift + 0.02 * torch.randn(x.shape, generator=gen)
        loss = loss_fn(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        bar.update(1)
        if step % 25 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if config.max_minutes is not None and (time.perf_counter() - t0) / 60 >= config.max_minutes:
            break
    bar.close()
    seconds = time.perf_counter() - t0
    names = organ_names(cache.vocabulary)
    manifest = json.loads((Path(cache_root) / "manifest.json").read_text())
    info = {"name": Segmenter.name, "config": config.to_json(), "cache": str(Path(cache_root).resolve()),
            "dataset": manifest.get("dataset"), "training_cases": sorted(m["case"] for m in cache.cases
                                                                         if m["split"] == "train" or "train" not in splits),
            "prepare": cache.config.to_json(), "vocabulary": cache.vocabulary.to_json(),
            "steps": step, "seconds": round(seconds, 1), "torch_version": torch.__version__}
    seg = Segmenter(net, config, info, out)
    split = next((s for s in ("test", "val") if s in splits), None)
    info["reference_split"] = split or "all (no held-out cases: the training cases themselves)"
    info["reference_dice"] = reference_dice(seg, cache, split, names)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "model.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp))
    write_json(out / "segmenter.json", info)  # last: its presence marks a complete segmenter
    if log:
        log(f"segmenter: {step} steps in {seconds:.0f} s; mean Dice on real {split} CTs "
            f"{info['reference_dice'].get('mean', float('nan')):.3f}")
    return seg
