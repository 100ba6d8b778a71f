"""One dial, two mechanisms: dropping tokens (the PSS keep ratio) against merging them (ToMe), on the
same checkpoints, on the same axis (measured images/s).

    python benchmarks/dial_vs_merge.py --baseline RUN_S0 RUN_S1 --pss RUN_S0 RUN_S1 --output runs/dial_vs_merge

Runs `pss sweep --reduce both` (each model at its default inference rule; all points timed interleaved)
on every run, then per seed (the i-th baseline with the i-th PSS run):
  * ToMe's reach: images/s at each merge rate over the full model's (r = 0);
  * at each of the baseline's ToMe points, the PSS model's top-1 at the same measured images/s, linearly
    interpolated between its measured keep ratios (dropping tokens), against the baseline-with-ToMe top-1;
  * at keep ratio 0.5: top-1 lost by the PSS model and by the baseline, each at its default rule (target:
    PSS loses at most half of what the baseline loses).
Writes `dial_vs_merge_<tag>_<date>.json` / `.md` under --results; sweep.json / sweep.png under --output.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from pss.analysis.sweep import interpolate, parse_keep_ratios, sweep_checkpoints, write_sweep  # noqa: E402
from pss.study import write_record  # noqa: E402

KEEP = "1,0.9,0.8,0.7,0.6,0.5,0.4,0.3,0.2"



def _entry(result: dict, name: str, reduce: str) -> dict:
    return next(e for e in result["checkpoints"] if e["name"].startswith(name + " (") and e["reduce"] == reduce)


def compare(result: dict, baseline: str, pss: str) -> dict[str, Any]:
    """The targets for one (baseline, PSS) pair of a `sweep_checkpoints(..., reduce="both")` result."""
    b_drop, b_merge = _entry(result, baseline, "drop")["results"], _entry(result, baseline, "merge")["results"]
    p_drop, p_merge = _entry(result, pss, "drop")["results"], _entry(result, pss, "merge")["results"]
    full_ips = next(r["images_per_s"] for r in b_merge if r["merge_r"] == 0)
    curve = [(r["images_per_s"], r["acc1"]) for r in p_drop]
    points = []
    for r in b_merge:
        if r["merge_r"] == 0:
            continue
        pss_acc = interpolate(curve, r["images_per_s"])
        points.append({"merge_r": r["merge_r"], "speedup": r["images_per_s"] / full_ips, "images_per_s": r["images_per_s"],
                       "baseline_tome_acc1": r["acc1"], "pss_drop_acc1": pss_acc,
                       "met": None if pss_acc is None else pss_acc >= r["acc1"]})

    def lost(rows: list[dict]) -> float:
        by = {r["keep_ratio"]: r["acc1"] for r in rows}
        return by[1.0] - by[0.5]

    b_lost, p_lost = lost(b_drop), lost(p_drop)
    return {
        "baseline": baseline, "pss": pss,
        "baseline_select": _entry(result, baseline, "drop")["select"], "pss_select": _entry(result, pss, "drop")["select"],
        "full_images_per_s": full_ips,
        "tome_speedups": {str(r["merge_r"]): r["images_per_s"] / full_ips for r in b_merge},
        "pss_tome_speedups": {str(r["merge_r"]): r["images_per_s"] / full_ips for r in p_merge},
        "drop_speedups": {f"{r['keep_ratio']:g}": r["images_per_s"] / full_ips for r in b_drop},
        "at_tome_points": points,
        "rho05": {"baseline_lost": b_lost, "pss_lost": p_lost, "met": p_lost <= 0.5 * b_lost},
    }


def to_markdown(rec: dict[str, Any]) -> str:
    res = rec["sweep"]
    lines = [f"# Dropping vs merging tokens at inference ({rec['date']})", "",
             f"Device: {res['device']}, batch {res['batch_size']}, {res['precision']}; "
             f"torch {res['torch']}, commit {res['commit']}. Every point timed interleaved in one run (median of "
             f"{rec['iters']} batches after {rec['warmup']} warm-up batches, synchronised). Top-1 on the validation "
             "set" + (f" ({rec['max_images']} images, evenly spread)" if rec.get("max_images") else "") + "; each model drops tokens with its default inference rule; ToMe merges r tokens per block at "
             "every patch.", "", "## Every point", "",
             "| model | mechanism | setting | top-1 | images/s | x full | GFLOPs | tokens/block |", "|---|---|---|---|---|---|---|---|"]
    for e in res["checkpoints"]:
        full = next(c for c in rec["pairs"] if e["name"].split(" (")[0] in (c["baseline"], c["pss"]))["full_images_per_s"]
        for r in e["results"]:
            setting = f"r={r['merge_r']}" if "merge_r" in r else f"rho={r['keep_ratio']:g}"
            mech = "ToMe" if e["reduce"] == "merge" else f"drop ({e['select']})"
            lines.append(f"| {e['name'].split(' (')[0]} | {mech} | {setting} | {r['acc1']:.2f} | {r['images_per_s']:.0f} | "
                         f"{r['images_per_s'] / full:.2f} | {r['gflops_per_image']:.4f} | {r['tokens']} |")
    lines += ["", "## Targets", ""]
    for c in rec["pairs"]:
        reach = max(c["tome_speedups"].values())
        lines += [f"### {c['pss']} (default rule {c['pss_select']}) vs {c['baseline']} (default rule {c['baseline_select']})", "",
                  f"ToMe reaches {reach:.2f}x the full model's images/s (target: covers 1.2x-2x).", "",
                  "| ToMe r | x full | baseline + ToMe top-1 | PSS dropping, same images/s | met |", "|---|---|---|---|---|"]
        for p in c["at_tome_points"]:
            acc = "outside its range" if p["pss_drop_acc1"] is None else f"{p['pss_drop_acc1']:.2f}"
            met = "-" if p["met"] is None else ("met" if p["met"] else "**missed**")
            lines.append(f"| {p['merge_r']} | {p['speedup']:.2f} | {p['baseline_tome_acc1']:.2f} | {acc} | {met} |")
        r5 = c["rho05"]
        lines += ["", f"At keep ratio 0.5: PSS loses {r5['pss_lost']:.2f} points, the baseline {r5['baseline_lost']:.2f} "
                  f"(target: at most half) -> {'met' if r5['met'] else '**missed**'}.", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", nargs="+", required=True, help="full-token run folders, one per seed")
    p.add_argument("--pss", nargs="+", required=True, help="PSS run folders, one per seed (same order)")
    p.add_argument("--keep", default=KEEP)
    p.add_argument("--merge-r", default=None, help="merge rates (default: 0 and six up to the model's largest)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--max-images", type=int, default=None, help="validation images, evenly spread (default: all)")
    p.add_argument("--output", default="runs/dial_vs_merge")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--tag", default="cpu")
    args = p.parse_args()
    if len(args.baseline) != len(args.pss):
        raise SystemExit("give as many --pss runs as --baseline runs (one pair per seed)")
    runs = [*args.baseline, *args.pss]
    names = [Path(r).name for r in runs]
    rates = None if args.merge_r is None else [int(v) for v in args.merge_r.split(",")]
    result = sweep_checkpoints(runs, keep_ratios=parse_keep_ratios(args.keep), batch_size=args.batch_size, device="cpu",
                               names=names, warmup=args.warmup, iters=args.iters, reduce="both", merge_r=rates,
                               max_images=args.max_images)
    write_sweep(result, args.output)
    pairs = [compare(result, Path(b).name, Path(s).name) for b, s in zip(args.baseline, args.pss)]
    rec = {"kind": "dial_vs_merge", "date": dt.date.today().isoformat(), "warmup": args.warmup, "iters": args.iters,
           "max_images": args.max_images,
           "pairs": pairs, "sweep": result}
    out = write_record(Path(args.results) / f"dial_vs_merge_{args.tag}_{rec['date']}.json", rec, to_markdown(rec))
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
