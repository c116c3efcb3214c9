"""Does each organ come out at its density? Per-organ median HU of generated held-out slabs against the
held-out phantom's own CT on the same grid.

The slabs, reports and seeds of ``scripts/report_adherence.py`` (32 slices centred on the liver, each
case's own report, seed 1000 + case index): per checkpoint and organ, the median over cases of the
generated and of the real organ median, the median absolute difference, and how many cases miss by more
than 100 HU (an organ drawn as another tissue: a spleen drawn like lung misses by 150-350 HU). With
``--profile ORGAN``, that organ's median HU slice by slice (generated / real / lung pixels in the slice),
which shows where along the chain an organ goes wrong, and how evenly the organ is drawn along z: per
case the standard deviation of its slice medians, generated and real (the phantom draws an organ at one
density, so the real spread is its texture and partial volume alone).

With ``--totalseg WORK``, also the real TotalSegmentator mask in ../shared (the example mask and report
of ``scripts/real_data_table.py``, seeds 0-2) through ``tracect evaluate``'s measurements: per-organ
median HU error and organs in the wrong tissue class; and the spleen's median HU when the mask's spleen
is relabelled as liver before generation (parallel mode, seed 0: does the label or the place decide?).

    PYTHONPATH=src python scripts/organ_hu_heldout.py --heldout heldout --runs v1=run_a jitter=run_b \
        [--cases 12] [--mode parallel] [--relabel spleen=liver] [--profile spleen] [--totalseg WORK] \
        [--out organ_hu.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report_adherence import load_cases  # noqa: E402

OFF_HU = 100.0  # an organ's median this far from the real one: drawn as another tissue


def relabelled(mask, vocabulary, source: str, target: str):
    """The mask with every ``source`` voxel labelled ``target`` (names of ``vocabulary``)."""
    a, b = vocabulary.id_of(source), vocabulary.id_of(target)
    return mask.with_array(np.where(mask.array == a, b, mask.array).astype(mask.array.dtype))


def organ_medians(run: str, cases: list[dict], profile: str | None, mode: str = "sequential",
                  relabel: tuple[str, str] | None = None) -> tuple[list[dict], dict]:
    """Generate each case's own-report slab -> (per case {organ: (generated, real, voxels)}, per case the
    profile organ's slices [(z, generated, real, lung pixels)]). ``relabel`` ``(FROM, TO)``: the mask's
    FROM label is replaced by TO before generation, and every organ is still measured where the mask as
    given puts it (does the label or the place decide an organ's density?)."""
    from tracect.data.resample import resample_to_grid
    from tracect.evaluate import metrics as M
    from tracect.generate.pipeline import Generator
    from tracect.generate.sampling import Sampling

    gen = Generator.from_checkpoint(run)
    names = dict(gen.vocabulary.labels)
    ids = {n: i for i, n in names.items()}
    sampling = Sampling(mode=mode)
    plans, given = [], {}
    for c in cases:
        mask = c["mask"]
        if relabel:
            from tracect.labels.vocabulary import total

            given[c["index"]] = gen.plan(mask, "", vocabulary="total", seed=0, sampling=sampling).labels
            mask = relabelled(mask, total(), *relabel)
        plans.append(gen.plan(mask, c["reports"]["own"], vocabulary="total", seed=1000 + c["index"], key=c["index"],
                              sampling=sampling))
    rows, profiles = [], {}
    for plan, vol in gen.generate_many(plans, sampling=sampling, batch_volumes=8):
        c = cases[plan.key]
        hu, lab = vol.canonical.array.astype(np.float32), given.get(plan.key, vol.labels.array)
        real = resample_to_grid(c["image"], vol.canonical.affine, lab.shape, order=1, cval=-1024).array
        gen_hu, real_hu = M.organ_hu_stats(hu, lab, names), M.organ_hu_stats(real, lab, names)
        rows.append({"case": c["case"], **{o: (s["median"], real_hu[o]["median"], s["voxels"])
                                            for o, s in gen_hu.items()}})
        if profile:
            sel, lung = lab == ids[profile], lab == ids.get("lung", -1)
            profiles[c["case"]] = [(z, float(np.median(hu[z][sel[z]])), float(np.median(real[z][sel[z]])),
                                    int(lung[z].sum())) for z in range(lab.shape[0]) if sel[z].sum() >= 5]
    return rows, profiles


def summary(rows: list[dict]) -> dict:
    """Per organ over the cases: generated and real median HU, median |error|, cases off by > OFF_HU."""
    organs = sorted({k for r in rows for k in r if k != "case"})
    out = {}
    for o in organs:
        g = np.array([r[o][0] for r in rows if o in r])
        t = np.array([r[o][1] for r in rows if o in r])
        out[o] = {"n": len(g), "generated_median": float(np.median(g)), "real_median": float(np.median(t)),
                  "abs_error_median": float(np.median(np.abs(g - t))), "off_100hu": int(np.sum(np.abs(g - t) > OFF_HU))}
    return out


def profile_spread(profiles: dict) -> dict:
    """Per case the standard deviation over slices of the profile organ's slice medians, generated and
    real (slices of the profile: at least 5 of its voxels); the medians over cases."""
    per = {case: (float(np.std([g for _, g, _, _ in zs])), float(np.std([r for _, _, r, _ in zs])))
           for case, zs in profiles.items() if len(zs) >= 3}
    g, r = np.array([v[0] for v in per.values()]), np.array([v[1] for v in per.values()])
    return {"n": len(per), "generated_sd_median": float(np.median(g)) if len(g) else float("nan"),
            "real_sd_median": float(np.median(r)) if len(r) else float("nan"), "per_case": per}


def totalseg_check(work: Path, runs: dict[str, str]) -> dict:
    """The real TotalSegmentator example, seeds 0-2, per run: ``tracect evaluate``'s per-organ median HU
    error (mean over organs) and organs in the wrong tissue class; then the spleen relabelled as liver."""
    import real_data_table as R
    from tracect.evaluate.harness import evaluate
    from tracect.generate.pipeline import Generator
    from tracect.generate.sampling import Sampling
    from tracect.io.readers import read_mask
    from tracect.labels.vocabulary import get_vocabulary

    masks = {"totalseg-example": {"mask": R.TOTALSEG / "seg.nii.gz", "vocabulary": "total",
                                  "report": R.TOTALSEG_REPORT, "reference": R.TOTALSEG / "ct.nii.gz"}}
    entries = R.generate_all(work, runs, masks, [0, 1, 2])
    total = get_vocabulary("total")
    mask = read_mask(R.TOTALSEG / "seg.nii.gz", total)
    out = {}
    for name, run in runs.items():
        s = R.summarise(evaluate(entries[name]["totalseg-example"], work / "eval" / name, html=False,
                                 progress=False, log=None))
        gen = Generator.from_checkpoint(run)
        spleen, region = {}, None
        for how, m in (("as given", mask), ("relabelled liver", relabelled(mask, total, "spleen", "liver"))):
            res = gen.generate(m, R.TOTALSEG_REPORT, vocabulary="total", seed=0, sampling=Sampling(mode="parallel"))
            if region is None:  # the spleen's place, from the mask as given
                region = res.labels.array == gen.vocabulary.id_of("spleen")
            spleen[how] = float(np.median(res.canonical.array[region]))
        out[name] = {"hu_abs_error_mean": s["hu_abs_error_mean"], "wrong_tissue_class": s["wrong_tissue_class"],
                     "organ_median_hu": s["organ_median_hu"], "spleen_parallel_seed0": spleen}
        print(f"{name}: per-organ median HU error {s['hu_abs_error_mean']} (seeds 0-2); spleen "
              f"{s['organ_median_hu'].get('spleen')}; wrong tissue class: {s['wrong_tissue_class']}")
        print(f"  spleen region, parallel, seed 0: labelled spleen {spleen['as given']:.0f} HU, "
              f"relabelled liver {spleen['relabelled liver']:.0f} HU")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--heldout", required=True, help="held-out phantom dataset (tracect phantom --split test)")
    ap.add_argument("--runs", nargs="+", required=True, help="NAME=RUN_FOLDER")
    ap.add_argument("--cases", type=int, default=12)
    ap.add_argument("--slab", type=int, default=32)
    ap.add_argument("--mode", default="sequential", choices=("sequential", "parallel"))
    ap.add_argument("--relabel", default=None, metavar="FROM=TO",
                    help="replace the mask's FROM label (a `total` name, e.g. spleen) by TO (e.g. liver) before "
                         "generation; organs are measured where the mask as given puts them")
    ap.add_argument("--profile", default=None, help="an organ whose slice-by-slice median HU to print")
    ap.add_argument("--totalseg", default=None, help="work folder for the TotalSegmentator example check")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    cases = load_cases(Path(args.heldout), args.slab, args.cases)
    result = {}
    for spec in args.runs:
        name, run = spec.split("=", 1)
        rows, profiles = organ_medians(run, cases, args.profile, args.mode,
                                       tuple(args.relabel.split("=", 1)) if args.relabel else None)
        result[name] = {"run": run, "cases": rows, "summary": summary(rows), "profile": profiles}
        if args.profile:
            result[name]["profile_spread"] = profile_spread(profiles)
    names = list(result)
    print(f"{len(cases)} held-out slabs, own reports; per organ: generated / real median HU, median |error|, "
          f"cases off by > {OFF_HU:.0f} HU")
    print("organ".ljust(12) + "".join(n.rjust(30) for n in names))
    for organ in result[names[0]]["summary"]:
        cells = []
        for n in names:
            s = result[n]["summary"].get(organ)
            cells.append("" if s is None else f"{s['generated_median']:.0f}/{s['real_median']:.0f}, "
                         f"{s['abs_error_median']:.0f}, {s['off_100hu']} of {s['n']}")
        print(organ.ljust(12) + "".join(c.rjust(30) for c in cells))
    if args.profile:
        for n in names:
            print(f"\n{n}: {args.profile} by slice (z: generated/real/lung pixels)")
            for case, zs in result[n]["profile"].items():
                print(case, " ".join(f"{z}:{g:.0f}/{r:.0f}/{lp}" for z, g, r, lp in zs))
            sp = result[n]["profile_spread"]
            print(f"{n}: SD of the {args.profile}'s slice medians along z, median over {sp['n']} cases: "
                  f"generated {sp['generated_sd_median']:.1f} HU, real {sp['real_sd_median']:.1f} HU")
    if args.totalseg:
        result["totalseg"] = totalseg_check(Path(args.totalseg), {n: result[n]["run"] for n in names})
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
