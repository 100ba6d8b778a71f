"""What a lower training resolution saves in the input pipeline of a JPEG folder: the recipe's training loader
(decode, augment, batch) timed at the full side and at lower ones, as `pss bench data --sides` times it, in
repeats that alternate the order of the sides.

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/data_sides.py --data JPEG_FOLDER --repeats 4

A folder decodes and augments a lower training side in its workers (`pss.resolution`): a JPEG is decoded at
the smallest of its DCT scales still at least the side (PIL's `draft`), and every augmentation works on the
smaller image. The recipe (default `deit_small_224_pss`: 224 px, RandAugment, random erasing) and its loader
are what `pss train` builds; `--model-iters` is 0 (the model is not timed: the loader alone). The record says
what the folder holds (image count, mean side in pixels and mean file size), never where it is.
Writes `benchmarks/results/data_sides_<device>[-TAG]_<date>.json` and `.md`.
"""
from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))  # results_page, beside this script

from pss.study import write_record  # noqa: E402
from results_page import write as write_results_page  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="an ImageNet-style folder of JPEGs (train/<class>/*.jpg)")
    p.add_argument("--config", default="deit_small_224_pss", help="the recipe whose loader is timed")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="recipe override, e.g. --set batch_size=32")
    p.add_argument("--sides", default="1.0,0.5", help="training sides as fractions of img_size, 1.0 (the reference) among them")
    p.add_argument("--workers", type=int, default=1, help="loader workers (default 1: images/s per worker)")
    p.add_argument("--repeats", type=int, default=4, help="timings per side, the order of the sides alternating")
    p.add_argument("--batches", type=int, default=12, help="batches timed per side and repeat")
    p.add_argument("--warmup", type=int, default=2, help="batches before timing")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results"), help="where the record goes")
    p.add_argument("--tag", default="", help="a tag in the record's name")
    p.add_argument("--note", default="", help="a line on how the folder was made or the machine was loaded")
    args = p.parse_args(argv)
    args.sides = tuple(float(s) for s in args.sides.split(",") if s.strip())
    if args.repeats < 1 or len(args.sides) < 2 or 1.0 not in args.sides:
        p.error("--repeats must be >= 1 and --sides must name at least two sides, 1.0 (the full side) among them")
    return args


def describe_folder(files: list[Path], sample: int = 200) -> dict:
    """What the timed images are like: count, mean width and height, mean file size (from the first `sample`)."""
    from PIL import Image

    sizes, nbytes = [], []
    for f in files[:sample]:
        with Image.open(f) as im:
            sizes.append(im.size)
        nbytes.append(f.stat().st_size)
    return {"images": len(files), "mean_width": statistics.fmean(w for w, _ in sizes),
            "mean_height": statistics.fmean(h for _, h in sizes), "mean_kb": statistics.fmean(nbytes) / 1000,
            "formats_sampled": sorted({f.suffix.lower() for f in files[:sample]})}


def measure(args: argparse.Namespace) -> dict:
    from pss.bench import data_benchmark
    from pss.resolve import resolve_config

    cfg, _ = resolve_config(args.config, ["device=cpu", *args.overrides], data=args.data, output="-")
    timings = []
    for r in range(args.repeats):
        order = args.sides if r % 2 == 0 else tuple(reversed(args.sides))
        report = data_benchmark(cfg, workers=(args.workers,), warmup=args.warmup, batches=args.batches,
                                sides=order, model_iters=0)
        timings.append({"order": list(order), "rows": report["results"]})
        print(f"repeat {r + 1}/{args.repeats}: " + ", ".join(f"{row['side']} px {row['images_per_s']:.0f} img/s"
                                                             for row in report["results"]), flush=True)
    train = Path(report["pipeline"]["root"]) / report["pipeline"]["train_split"]
    files = sorted(p for p in train.rglob("*") if p.is_file())
    info = {k: report[k] for k in ("device", "torch", "timm", "commit", "cpu_cores", "num_train") if k in report}
    pipeline = {k: v for k, v in report["pipeline"].items() if k != "root"}
    return {"kind": "data_sides", **info, "date": dt.date.today().isoformat(), "recipe": args.config,
            "overrides": args.overrides, "workers": args.workers, "batches": args.batches, "pipeline": pipeline,
            "folder": describe_folder(files), "note": args.note, "timings": timings,
            "sides": summarise(timings)}


def summarise(timings: list[dict]) -> list[dict]:
    """Per side: images/s of every repeat, their median, and the median of each repeat's ratio to the first side's."""
    by_side: dict[int, list[float]] = {}
    ratios: dict[int, list[float]] = {}
    for t in timings:
        ips = {row["side"]: row["images_per_s"] for row in t["rows"]}
        ref = ips[max(ips)]  # the full side (--sides holds 1.0)
        for side, v in ips.items():
            by_side.setdefault(side, []).append(v)
            ratios.setdefault(side, []).append(v / ref)
    return [{"side": s, "images_per_s": v, "median_images_per_s": statistics.median(v),
             "ratio_to_full_side": statistics.median(ratios[s]), "ratios": ratios[s],
             "decoded_at_side": all(row["decoded_at_side"] for t in timings for row in t["rows"] if row["side"] == s)}
            for s, v in sorted(by_side.items(), reverse=True)]


def to_markdown(rec: dict) -> list[str]:
    f, p = rec["folder"], rec["pipeline"]
    lines = [f"# A lower training side in the input pipeline ({rec['date']}, {rec['device']}, commit {rec['commit']})", "",
             f"The `{rec['recipe']}` recipe's training loader ({p['img_size']} px, batch {p['batch_size']}, auto_augment "
             f"{p['auto_augment']}, re_prob {p['re_prob']}; {rec['workers']} worker(s)) on a folder of {f['images']} "
             f"training images ({', '.join(f['formats_sampled'])}; mean {f['mean_width']:.0f} x {f['mean_height']:.0f} px, "
             f"{f['mean_kb']:.0f} kB), timed as `pss bench data --sides` times it: {rec['batches']} batches per side "
             f"and repeat, {len(rec['timings'])} repeats alternating the order of the sides. A lower side is decoded "
             "at it (JPEG draft) and augmented at it in the workers.", ""]
    if rec.get("note"):
        lines += [rec["note"], ""]
    lines += ["| side (px) | images/s per repeat | median images/s | median ratio to the full side | decoded at the side |",
              "|---|---|---|---|---|"]
    for s in rec["sides"]:
        lines.append(f"| {s['side']} | {', '.join(f'{v:.0f}' for v in s['images_per_s'])} | {s['median_images_per_s']:.0f} | "
                     f"{s['ratio_to_full_side']:.2f}x | {'yes' if s['decoded_at_side'] else 'no (resized in the loop)'} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rec = measure(args)
    tag = ("cpu" if rec["device"].startswith("cpu") else "gpu") + (f"-{args.tag}" if args.tag else "")
    path = write_record(Path(args.results) / f"data_sides_{tag}_{rec['date']}.json", rec, to_markdown(rec))
    print(path.with_suffix(".md").read_text())
    write_results_page(Path(args.results))
    return 0


if __name__ == "__main__":
    from pss.cli import guarded  # a ConfigError is one line, a signal exit code 130

    raise SystemExit(guarded("data_sides.py", main))
