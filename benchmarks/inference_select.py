"""Which selection rule should a model use at inference? The protocol behind
`pss.select.DEFAULT_INFERENCE_SELECT`, on data that no reported figure uses.

    python benchmarks/inference_select.py RUN [RUN ...] --output runs/inference_select

For every finished run folder (one per training rule and seed; any dataset), its best checkpoint is
evaluated on held-out images at keep ratios 0.8, 0.6, 0.5, 0.4, 0.3, 0.2 with every selection rule:

  * a folder dataset: the training images that the run did NOT train on (`data.max_train_per_class`
    took the first N files of each class; the next --heldout files of each class are used);
  * the built-in set: --heldout fresh images per class drawn with generator seed 1000 (training and
    the reported validation set use the run's `data.seed`, 0 by default).

A rule's score is its mean top-1 over those keep ratios. The default for a training rule is the
deterministic rule (magnitude, l2, grid: the same tokens for the same image at every call) with the
best score averaged over every run of that training rule (datasets x seeds); random is measured
(seeded) for reference only. Writes `inference_select_<tag>_<date>.json` / `.md` under --results.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402
from torchvision.datasets.folder import IMG_EXTENSIONS  # noqa: E402

from pss.analysis.evaldata import val_loader_for  # noqa: E402
from pss.analysis.sweep import evaluate  # noqa: E402
from pss.control import samplers  # noqa: E402
from pss.errors import ConfigError  # noqa: E402
from pss.models.hub import load_model  # noqa: E402
from pss.runfolder import RunDir  # noqa: E402
from pss.runinfo import run_info  # noqa: E402
from pss.select import DETERMINISTIC_RULES  # noqa: E402
from pss.study import write_record  # noqa: E402

KEEP = (0.8, 0.6, 0.5, 0.4, 0.3, 0.2)
RULES = (*DETERMINISTIC_RULES, "random")
BUILTIN_HELDOUT_SEED = 1000


def heldout_config(config: dict[str, Any], heldout: int, work: Path) -> dict[str, Any]:
    """The run's config with its validation split replaced by held-out training-distribution images."""
    cfg = json.loads(json.dumps(config))
    d = cfg["data"]
    if d.get("path") is None:  # built-in set: fresh images from another generator seed
        classes = int(d.get("builtin_num_classes", 10))
        d.update(seed=BUILTIN_HELDOUT_SEED, builtin_num_val=heldout * classes, num_workers=0)
        return cfg
    root = Path(d["path"]).expanduser()
    skip = d.get("max_train_per_class")
    if not root.is_dir() or skip is None:
        raise ConfigError(f"{root}: held-out images need a folder dataset trained on data.max_train_per_class files")
    split = d.get("val_split", "val")
    dest = work / f"heldout_{root.name}_{skip}_{heldout}"
    for cls in sorted(p for p in (root / d.get("train_split", "train")).iterdir() if p.is_dir()):
        files = sorted(f for f in cls.iterdir() if f.name.lower().endswith(IMG_EXTENSIONS))[skip: skip + heldout]
        for sub in (split, d.get("train_split", "train")):
            (dest / sub / cls.name).mkdir(parents=True, exist_ok=True)
            for f in files:
                link = dest / sub / cls.name / f.name
                if not link.exists():
                    link.symlink_to(f)
    d.update(path=str(dest), max_val_per_class=None, max_train_per_class=None, num_workers=0)
    return cfg


def measure(run: Path, heldout: int, work: Path, batch_size: int) -> dict[str, Any]:
    model, config = load_model(run, "cpu")
    trained = samplers(model)[0].trained_select
    loader, _ = val_loader_for(heldout_config(config, heldout, work), None, batch_size)
    acc = {}
    for rule in RULES:
        torch.manual_seed(0)  # random selection: the same draws for every run
        acc[rule] = {f"{k:g}": evaluate(model, loader, k, rule)["acc1"] for k in KEEP}
    full = evaluate(model, loader, 1.0)["acc1"]
    data = config["data"].get("path") or "builtin"
    return {"run": run.name, "dataset": Path(data).name, "seed": config.get("seed"), "trained_select": trained,
            "heldout_images": len(loader.dataset), "full_acc1": full, "acc1": acc,
            "score": {r: statistics.fmean(a.values()) for r, a in acc.items()}}


def choose(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per training rule: mean score of each rule over its runs, and the best deterministic rule."""
    table = {}
    for trained in sorted({r["trained_select"] or "none" for r in rows}):
        mine = [r for r in rows if (r["trained_select"] or "none") == trained]
        mean = {rule: statistics.fmean(r["score"][rule] for r in mine) for rule in RULES}
        best = max(DETERMINISTIC_RULES, key=lambda rule: mean[rule])
        table[trained] = {"runs": [f"{r['dataset']}/{r['run']}" for r in mine], "mean_score": mean, "choice": best,
                          "wins": {rule: sum(max(DETERMINISTIC_RULES, key=lambda q: r["score"][q]) == rule for r in mine)
                                   for rule in DETERMINISTIC_RULES}}
    return table


def to_markdown(rec: dict[str, Any]) -> str:
    lines = [f"# Inference selection rule by training rule ({rec['date']})", "",
             f"Device: {rec['device']}; torch {rec['torch']}, commit {rec['commit']}. Held-out images (never trained "
             "on, never reported): " + rec["heldout"] + ". Score = mean top-1 (%) over keep ratios "
             + ", ".join(f"{k:g}" for k in KEEP) + "; random is seeded and for reference only.", "",
             "## Choice", "", "| trained with | runs | " + " | ".join(RULES) + " | choice | runs won (m / l2 / grid) |",
             "|---|---|" + "---|" * len(RULES) + "---|---|"]
    for trained, t in rec["table"].items():
        cells = " | ".join(f"{t['mean_score'][r]:.2f}" for r in RULES)
        wins = " / ".join(str(t["wins"][r]) for r in DETERMINISTIC_RULES)
        lines.append(f"| {trained} | {len(t['runs'])} | {cells} | **{t['choice']}** | {wins} |")
    lines += ["", "## Per run (top-1 % on held-out images)", "",
              "| dataset | run | seed | trained with | every token | rule | " + " | ".join(f"{k:g}" for k in KEEP) + " | score |",
              "|---|---|---|---|---|---|" + "---|" * len(KEEP) + "---|"]
    for r in rec["runs"]:
        for rule in RULES:
            accs = " | ".join(f"{r['acc1'][rule][f'{k:g}']:.2f}" for k in KEEP)
            lines.append(f"| {r['dataset']} | {r['run']} | {r['seed']} | {r['trained_select'] or 'none'} | "
                         f"{r['full_acc1']:.2f} | {rule} | {accs} | {r['score'][rule]:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="*", help="finished run folders (summary.json)")
    p.add_argument("--from-records", nargs="+", default=[], metavar="JSON",
                   help="also take the runs measured in these earlier records (e.g. runs measured one at a time)")
    p.add_argument("--heldout", type=int, default=100, help="held-out images per class (default 100)")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--output", default="runs/inference_select", help="work folder (held-out image links)")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--tag", default="cpu")
    args = p.parse_args()
    work = Path(args.output)
    work.mkdir(parents=True, exist_ok=True)
    rows = [r for f in args.from_records for r in json.loads(Path(f).read_text())["runs"]]
    for run in map(Path, args.runs):
        if not RunDir(run).is_finished():
            print(f"skipped (not finished): {run}")
            continue
        rows.append(measure(run, args.heldout, work, args.batch_size))
        r = rows[-1]
        print(f"{r['dataset']}/{r['run']} ({r['trained_select'] or 'none'}): "
              + ", ".join(f"{k} {v:.2f}" for k, v in r["score"].items()), flush=True)
    info = run_info("cpu")
    rec = {"kind": "inference_select", "date": dt.date.today().isoformat(), "device": info["device"],
           "torch": info["torch"], "commit": info["commit"], "keep_ratios": list(KEEP),
           "heldout": f"{args.heldout} per class: folder datasets' training images after the first "
                      f"data.max_train_per_class of each class; the built-in set drawn with seed {BUILTIN_HELDOUT_SEED}",
           "runs": rows, "table": choose(rows)}
    out = write_record(Path(args.results) / f"inference_select_{args.tag}_{rec['date']}.json", rec, to_markdown(rec))
    print(f"record: {out}")


if __name__ == "__main__":
    main()
