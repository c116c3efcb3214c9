"""Why a latent frame model does or does not denoise: three measurements on its own training latents.

1. **What the mask explains**, per latent channel: the share of the channel's variance left after
   subtracting the mean of its latent pixels' dominant label (pixels wholly inside one label, and all).
   A channel the mask explains is anatomy; one it does not is texture and noise the model must invent.
2. **One denoising step**, by noise level: real latent windows noised to time ``t``, the model's clean
   estimate against the truth (mean squared error per latent value), beside the error of the noisy
   input itself (``x_t / alpha``). A model that has learned its task is never worse with less noise:
   its error grows with ``t`` up to what the mask alone can say.
3. **Sampled roughness**: one volume sampled from a mask, the mean absolute difference between
   neighbouring latent pixels in x and between neighbouring slices, each over the volume's standard
   deviation, against the training latents'.

    python scripts/latent_denoise_profile.py --checkpoint RUN --cache LATENT_CACHE --mask MASK.nii.gz \
        [--out profile.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

TIMES = (0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.95)


def explained(latents: np.ndarray, fractions: np.ndarray) -> dict:
    """Latents ``(Z, C, h, w)``, label fractions ``(Z, L, h, w)`` -> per channel: variance and the share
    of it left after each dominant label's mean (all pixels; pixels at least 99% one label)."""
    dom, pure = fractions.argmax(1), fractions.max(1) > 0.99
    out = {"variance": [], "unexplained_all": [], "unexplained_pure": []}
    for ch in range(latents.shape[1]):
        x = latents[:, ch]
        resid = np.zeros_like(x)
        for label in np.unique(dom):
            sel = dom == label
            resid[sel] = x[sel] - x[sel].mean()
        out["variance"].append(float(x.var()))
        out["unexplained_all"].append(float(resid.var() / x.var()))
        out["unexplained_pure"].append(float(resid[pure].var() / x.var()))
    return out


def roughness(latents: np.ndarray) -> dict:
    """Neighbour differences ``(Z, C, h, w)`` in x and in z, over the standard deviation."""
    sd = float(latents.std())
    return {"x": float(np.abs(np.diff(latents, axis=3)).mean() / sd),
            "z": float(np.abs(np.diff(latents, axis=0)).mean() / sd)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="a latent frame model's run folder")
    ap.add_argument("--cache", required=True, help="the latent cache it was trained on")
    ap.add_argument("--mask", required=True, help="a mask to sample one volume from")
    ap.add_argument("--windows", type=int, default=16, help="real windows per noise level")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="JSON file for the figures")
    args = ap.parse_args()

    from tracect.autoencoder.latents import mask_fractions
    from tracect.data.cache import PreparedCache
    from tracect.data.windows import FrameWindows
    from tracect.generate.pipeline import Generator
    from tracect.generate.sampling import Sampling
    from tracect.io.readers import read_mask
    from tracect.model.conditioning import build_condition

    gen = Generator.from_checkpoint(args.checkpoint, device="cpu")
    mc = gen.config.model
    if mc.latent_channels < 2:
        raise SystemExit(f"{args.checkpoint}: not a latent model")
    labels = mc.num_classes + 1

    cache = PreparedCache(args.cache)
    first = cache.case(0)
    latents = np.asarray(cache.latents(0), np.float32)  # (Z, C, h, w)
    factor = first.image.shape[-1] // latents.shape[-1]
    fractions = mask_fractions(torch.from_numpy(np.asarray(first.mask, np.int64)), labels, factor).numpy()
    channels = explained(latents, fractions)

    torch.manual_seed(args.seed)
    ds = FrameWindows(args.cache, k=mc.frames, split=None, latent_labels=labels)
    picks = np.random.default_rng(args.seed).choice(len(ds), min(args.windows, len(ds)), replace=False)
    items = [ds[int(i)] for i in picks]
    x0 = torch.stack([it["image"] for it in items])  # (B, K, C, h, w)
    cond = build_condition(gen.text, torch.stack([it["mask"] for it in items]), [it["report"] for it in items],
                           torch.stack([torch.as_tensor(it["spacing"]) for it in items]).float(),
                           torch.stack([torch.as_tensor(it["position"]) for it in items]).float(), "cpu")
    sch, steps = gen.schedule, []
    with torch.no_grad():
        for tv in TIMES:
            t = torch.full((len(items),), tv)
            x_t = sch.add_noise(x0, torch.randn_like(x0), t)
            est, _ = sch.split(x_t, gen.model(x_t, sch.network_time(t), *cond.inputs()), t)
            a, s = sch.alpha_sigma(t[:1])
            steps.append({"t": tv, "sigma_over_alpha": float(s / a), "mse_estimate": float(((est - x0) ** 2).mean()),
                          "mse_noisy_input": float(((x_t / a - x0) ** 2).mean())})

    sampling = Sampling(steps=args.steps)
    plan = gen.plan(read_mask(args.mask), "", seed=args.seed, sampling=sampling)
    for _ in gen.sample([plan], sampling):
        pass
    sampled = plan.chain.out[plan.burn_in:].numpy().astype(np.float32)
    result = {"checkpoint": str(args.checkpoint), "cache_case": cache.cases[0]["case"], "channels": channels,
              "one_step": steps, "roughness": {"training": roughness(latents), "sampled": roughness(sampled)}}

    print("channel  variance  unexplained by the mask (all / pure pixels)")
    for ch, (v, a, p) in enumerate(zip(channels["variance"], channels["unexplained_all"], channels["unexplained_pure"])):
        print(f"{ch:>7}  {v:8.3f}  {a:.2f} / {p:.2f}")
    print("t      sigma/alpha  estimate MSE  noisy input MSE")
    for r in steps:
        print(f"{r['t']:.2f}  {r['sigma_over_alpha']:11.3f}  {r['mse_estimate']:12.4f}  {r['mse_noisy_input']:15.4f}")
    rt, rs = result["roughness"]["training"], result["roughness"]["sampled"]
    print(f"roughness x / z: training latents {rt['x']:.3f} / {rt['z']:.3f}, sampled {rs['x']:.3f} / {rs['z']:.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
