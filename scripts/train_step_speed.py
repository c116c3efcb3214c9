"""What a model option costs a training step, measured side by side in one process.

Each variant is a preset (or YAML file) with model settings changed (``NAME:key=value,key=value``, keys
of ``model``); a step is the network's forward and backward pass and an AdamW update on random inputs of
the preset's batch and slice size, with the report's full token length. The variants run in turn, a
block of steps each, for several rounds, so that a machine whose speed drifts slows them alike; the
median seconds per step of each and its ratio to the first variant are printed. Data loading, the flow
loss and the EMA are left out: this is the network's share of a step.

    PYTHONPATH=src python scripts/train_step_speed.py --config cpu-report \
        base: spade1x1:spade_channels=16 [--rounds 6 --steps 4]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch


def parse_variant(spec: str) -> tuple[str, dict]:
    """``NAME:key=value,...`` -> ``(NAME, {key: value})``, each value read as YAML (numbers, booleans; no commas inside a value)."""
    import yaml

    name, _, settings = spec.partition(":")
    pairs = (item.split("=", 1) for item in filter(None, settings.split(",")))
    return name, {key: yaml.safe_load(value) for key, value in pairs}


def main() -> None:
    from tracect.config import load_config
    from tracect.data.findings import FINDINGS_DIM
    from tracect.model.denoiser import FrameDenoiser, count_parameters, forward_flops

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="cpu-report")
    ap.add_argument("variants", nargs="+", help="NAME:key=value,... (model settings; the first is the baseline)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per variant and round")
    args = ap.parse_args()
    cfg = load_config(args.config)
    torch.manual_seed(0)
    B, K, S, L = cfg.train.batch_size, cfg.model.frames, cfg.model.image_size, cfg.model.text_max_tokens
    models = {}
    for spec in args.variants:
        name, settings = parse_variant(spec)
        model = FrameDenoiser(dataclasses.replace(cfg.model, **settings))
        models[name] = (model, torch.optim.AdamW(model.parameters(), 1e-4))
        print(f"{name}: {count_parameters(model):,} parameters, {forward_flops(model) / 1e9:.2f} GFLOP per window")

    def step(model, opt):
        x, t = torch.randn(B, K, S, S), torch.rand(B) * 1000
        mask = torch.randint(0, cfg.model.num_classes, (B, K, S, S))
        out = model(x, t, mask, torch.randn(B, L, cfg.model.text_dim), torch.randn(B, cfg.model.text_dim),
                    torch.randn(B, 5), findings=torch.zeros(B, FINDINGS_DIM),
                    lesion=torch.zeros(B, K, S, S, dtype=torch.long))
        out.square().mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    times = {name: [] for name in models}
    for name, (model, opt) in models.items():  # warm-up
        step(model, opt)
    for _ in range(args.rounds):
        for name, (model, opt) in models.items():
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step(model, opt)
            times[name].append((time.perf_counter() - t0) / args.steps)
    base = statistics.median(times[next(iter(models))])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {B}, {K} frames of {S}², "
          f"{L} tokens; {args.rounds} rounds of {args.steps} steps")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name}: median {m:.3f} s per step ({', '.join(f'{t:.3f}' for t in ts)}), {m / base:.2f}x the first")


if __name__ == "__main__":
    main()
