"""The first GPU run, prepared: everything it should measure, in stages that resume, one table last.

    PYTHONPATH=src python benchmarks/gpu_proof.py --device cuda --data data/cifar10-jpg.tar.gz
    python benchmarks/gpu_proof.py --device cpu --smoke          # tiny sizes: every stage runs (tests)

Stages, in order of value (each at most `--stage-minutes`, 5 by default; about 8 minutes in all on one
H200-class GPU by estimate, not yet measured):
  1. speed_vit_s   ViT-S/16, batch 256, bf16, torch.compile: step-time ratio per keep ratio (1.0, 0.6, 0.2)
                   for rel_bias through FlexAttention and rope through SDPA, with peak memory and
                   inference images/s per keep ratio (`pss.bench.speed_benchmark`, as benchmarks/speed.py)
  2. speed_vit_b   the same for ViT-B/16
  3. speed_more    keep ratios 0.8 and 0.4 (ViT-S, ViT-B), then eager and rel_bias through SDPA with
                   its bias mask (ViT-S)
  4. data          `pss bench data` on CIFAR-10 (the CIFAR-10 recipe's pipeline from files, 2 / 4 / 8
                   workers, and in memory)
  5. cifar10       a short CIFAR-10 comparison: full, recommended PSS and the equal-time baseline
                   (benchmarks/cifar10.py's runs on the study harness, `--cifar-epochs` epochs)

Each stage is made of units (one configuration, one training run); the record is rewritten after every
unit, and a unit is not started when the stage's time would run out (judged by the unit before it).
The same command again continues: finished units are read back from the record, cut-short training
runs resume from their checkpoints. The record, `benchmarks/results/gpu_proof_<device>[_<tag>].json` and
`.md`, holds the device name, torch / timm versions, the commit and the date; a record of another commit
is set aside (renamed with its date) and the stages start over.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing, e.g. on the GPU machine
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

import speed  # noqa: E402  (benchmarks/speed.py: targets and the side-by-side table)
from pss.bench import data_benchmark, speed_benchmark  # noqa: E402
from pss.errors import PssError  # noqa: E402
from pss.runinfo import run_info  # noqa: E402
from pss.study import record_header, write_record  # noqa: E402

log = logging.getLogger("pss.gpu_proof")

DEFAULT_DATA = Path("~/.cache/pss-data/cifar10").expanduser()
STAGES = ("speed_vit_s", "speed_vit_b", "speed_more", "data", "cifar10")


def speed_units(smoke: bool, cuda: bool) -> dict[str, list[dict]]:
    """Speed configurations per stage: model, batch, precision, compile, position scheme, attention, keep ratios."""
    if smoke:  # every code path, tiny: a 1-block ViT on 32 px images, batch 4, one timed step
        tiny = dict(model="pss_vit_tiny_patch4_32", batch=4, amp="fp32", compile=False, warmup=0, iters=1,
                    model_kwargs={"depth": 1, "embed_dim": 32, "num_heads": 2})
        return {
            "speed_vit_s": [dict(tiny, pos="rel_bias", impl="flex", keep=(1.0, 0.6, 0.2)),
                            dict(tiny, pos="rope", impl="sdpa", keep=(1.0, 0.6, 0.2))],
            "speed_vit_b": [dict(tiny, pos="rope", impl="sdpa", keep=(1.0, 0.2))],
            "speed_more": [dict(tiny, pos="rel_bias", impl="sdpa", keep=(1.0, 0.8, 0.4))],
        }
    amp = "bf16" if cuda else "fp32"
    units: dict[str, list[dict]] = {}
    for stage, name in (("speed_vit_s", "pss_vit_small_patch16_224"), ("speed_vit_b", "pss_vit_base_patch16_224")):
        base = dict(model=name, batch=256 if cuda else speed.MODELS[name][1], amp=amp, compile=cuda, warmup=5, iters=20,
                    model_kwargs={})
        units[stage] = [dict(base, pos="rel_bias", impl="flex" if cuda else "sdpa", keep=(1.0, 0.6, 0.2)),
                        dict(base, pos="rope", impl="sdpa", keep=(1.0, 0.6, 0.2))]
    s, b = units["speed_vit_s"], units["speed_vit_b"]
    units["speed_more"] = [dict(s[0], keep=(1.0, 0.8, 0.4)), dict(s[1], keep=(1.0, 0.8, 0.4)),
                           dict(b[0], keep=(1.0, 0.8, 0.4)), dict(b[1], keep=(1.0, 0.8, 0.4)),
                           dict(s[0], impl="sdpa"),  # rel_bias through SDPA with its bias as a mask
                           dict(s[0], compile=False), dict(s[1], compile=False)]  # eager
    return units


def unit_key(u: dict) -> str:
    keep = "/".join(f"{r:g}" for r in u["keep"])
    return (f"{u['model'].removeprefix('pss_vit_')} {u['pos']} {u['impl']} {'compiled' if u['compile'] else 'eager'} "
            f"b{u['batch']} {u['amp']} rho {keep}")


def run_speed_unit(u: dict, device: str) -> dict:
    try:
        rep = speed_benchmark(u["model"], batch_size=u["batch"], keep_ratios=u["keep"], device=device, amp=u["amp"],
                              compile=u["compile"], warmup=u["warmup"], iters=u["iters"], inference=True,
                              model_kwargs={**u["model_kwargs"], "pos_embed": u["pos"]}, attn_impl=u["impl"])
    except PssError as e:  # e.g. FlexAttention has no backward on this device: recorded, not fatal
        return {"model": u["model"], "pos_embed": u["pos"], "attn_impl": u["impl"], "compile": u["compile"],
                "skipped": str(e)}
    rep.update(attn_impl=u["impl"], targets=speed.targets_met(rep))
    return rep


def data_units(args: argparse.Namespace, data: str | None) -> list[dict]:
    common = ["device=" + args.device, "batch_size=" + ("8" if args.smoke else "256")]
    if args.smoke:
        common += ["data.val_split=val", "data.max_train_per_class=4"]
    return [dict(name="files", overrides=[*common, "data.in_memory=false"], workers=(0, 1) if args.smoke else (2, 4, 8)),
            dict(name="in memory", overrides=[*common, "data.in_memory=true", "data.num_workers=0"], workers=None)]


def run_data_unit(u: dict, data: str, args: argparse.Namespace) -> dict:
    from pss.resolve import resolve_config

    cfg, _ = resolve_config("cifar10_baseline", u["overrides"], data=data, output="-")
    return data_benchmark(cfg, workers=u["workers"], warmup=1 if args.smoke else 3, batches=2 if args.smoke else 20)


def cifar_plan(args: argparse.Namespace, data: str):
    """benchmarks/cifar10.py's runs (full, recommended PSS, its equal-time baseline), `--cifar-epochs` long."""
    import cifar10

    common = [f"epochs={args.cifar_epochs}", "lr_sched.warmup_epochs=1", "device=" + args.device,
              "checkpoint_interval_epochs=1", "eval.interval=1"]
    if args.smoke:
        common += ["model.kwargs={depth: 1, embed_dim: 32, num_heads: 2, pos_embed: rope}", "batch_size=8",
                   "data.val_split=val", "data.max_train_per_class=8", "data.num_workers=0", "mixup={mixup_alpha: 0.0, cutmix_alpha: 0.0}",
                   "optim.base_batch_size=8", "preflight=true"]
    return cifar10.make_plan(["baseline", "pss", "baseline_equal_time"], [0], common, data, Path(args.output))


def run_cifar_unit(plan: list, i: int) -> dict:
    from pss.equal_time import cost_vs_full
    from pss.study import run_plan

    summaries = run_plan(plan[: i + 1], quiet=True)  # earlier runs are read back, run i trains (or resumes)
    run = plan[i]
    s = summaries[(run.name, run.seed)]
    return {"run": run.name, "train_time_s": s["train_time_s"], "final_acc1": s.get("final_acc1"),
            "best_acc1": s.get("best_acc1"), "mean_keep_ratio": s.get("mean_keep_ratio"), "epochs": s.get("epochs"),
            "images_per_s": s.get("images_per_s"), "data_wait_fraction": s.get("data_wait_fraction"),
            "preflight": s.get("preflight"), "budget": s.get("budget"),
            "cost_vs_full": cost_vs_full(run.cfg, s).to_dict() if s.get("budget") else None}


# ---------------------------------------------------------------------------------------------
# the record


def final_table(rec: dict) -> str:
    lines = record_header(f"GPU proof: {rec['device']}", rec)
    reports = [u["result"] for s in STAGES[:3] for u in rec["stages"].get(s, {}).get("units", [])]
    if reports:
        lines += ["## Training-step time / time at rho = 1 (FLOP ratio beside), peak memory, inference", "",
                  "| configuration | rho | step (ms) | time ratio | FLOP ratio | peak MB | infer img/s |",
                  "|---|---|---|---|---|---|---|"]
        for rep in reports:
            label = (f"{rep.get('model', '?').removeprefix('pss_vit_')} {rep.get('pos_embed')} {rep.get('attn_impl')} "
                     f"{'compiled' if rep.get('compile') else 'eager'}")
            if "skipped" in rep:
                lines.append(f"| {label} | - | skipped: {rep['skipped'][:80]} | | | | |")
                continue
            for r in rep["results"]:
                mem = f"{r['peak_memory_mb']:.0f}" if r.get("peak_memory_mb") else "-"
                ips = f"{r['infer_images_per_s']:.0f}" if r.get("infer_images_per_s") else "-"
                lines.append(f"| {label} | {r['keep_ratio']:g} | {1000 * r['step_time_s']:.1f} | {r['relative_time']:.3f} "
                             f"| {r['flop_ratio']:.3f} | {mem} | {ips} |")
        lines.append("")
    data = [u for u in rec["stages"].get("data", {}).get("units", []) if "results" in u["result"]]
    if data:
        lines += ["## Input pipeline (CIFAR-10 recipe, pss bench data)", "",
                  "| loader | img/s | img/s per worker | mean wait per batch (ms) |", "|---|---|---|---|"]
        for u in data:
            for r in u["result"]["results"]:
                per = f"{r['images_per_s_per_worker']:.0f}" if r.get("images_per_s_per_worker") else "-"
                lines.append(f"| {r['loader']} | {r['images_per_s']:.0f} | {per} | {1000 * r['mean_batch_s']:.2f} |")
        lines.append("")
    runs = [u["result"] for u in rec["stages"].get("cifar10", {}).get("units", []) if "run" in u["result"]]
    if runs:
        from cifar10 import budget_cell  # the recipe's budget and the realised cost against the full run

        base = next((r for r in runs if r["run"] == "baseline"), None)
        lines += ["## Short CIFAR-10 comparison (seed 0)", "",
                  "| run | epochs | budget (realised cost vs full run) | train time (s) | time / full | final top-1 "
                  "| best top-1 | mean rho | data wait | pre-flight predicted ratio |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in runs:
            ratio = f"{r['train_time_s'] / base['train_time_s']:.3f}" if base else "-"
            pre = f"{r['preflight']['time_ratio']:.3f} ({r['preflight']['bound']})" if r.get("preflight") else "-"
            fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
            lines.append(f"| {r['run']} | {r['epochs']} | {budget_cell(r)} | {r['train_time_s']:.1f} | {ratio} | {fmt(r['final_acc1'])} "
                         f"| {fmt(r['best_acc1'])} | {fmt(r['mean_keep_ratio'])} | {fmt(r['data_wait_fraction'])} | {pre} |")
        lines.append("")
    for name in STAGES:
        st = rec["stages"].get(name)
        if st and st.get("note"):
            lines.append(f"- {name}: {st['note']}")
    return "\n".join(lines) + "\n"


def load_record(path: Path, info: dict) -> dict | None:
    if not path.exists():
        return None
    rec = json.loads(path.read_text())
    if rec.get("commit") != info["commit"] or rec.get("device") != info["device"]:
        old = path.with_name(f"{path.stem}_{rec.get('date', 'old')}_{rec.get('commit')}.json")
        path.rename(old)
        log.warning("set aside %s (commit %s, %s) as %s; starting over", path, rec.get("commit"), rec.get("device"), old)
        return None
    return rec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, every stage (CPU test of the script)")
    p.add_argument("--data", default=None, help=f"CIFAR-10 folder or .tar.gz archive (default: {DEFAULT_DATA} if present)")
    p.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset, in this order")
    p.add_argument("--stage-minutes", type=float, default=5.0, help="no unit starts past this much of a stage")
    p.add_argument("--cifar-epochs", type=int, default=None, help="epochs of each CIFAR-10 run (default 8; smoke 1)")
    p.add_argument("--output", default=str(ROOT / "runs" / "gpu_proof"), help="training runs go here")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--tag", default="")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.cifar_epochs is None:
        args.cifar_epochs = 1 if args.smoke else 8
    stages = [s for s in args.stages.split(",") if s]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise SystemExit(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda but no GPU is visible; use --device cpu --smoke to test the script")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        from pss.dynamo import raise_recompile_limit

        raise_recompile_limit(32)  # one graph per keep ratio, training and inference, per configuration

    data = args.data
    if data is None and args.smoke:  # a tiny folder of the built-in glyphs, written once
        from pss.config import DataConfig
        from pss.data import write_builtin_folder

        folder = Path(args.output) / "smoke_images"
        if not (folder / "train").exists():
            write_builtin_folder(folder, DataConfig(builtin_num_train=40, builtin_num_val=20, builtin_num_classes=4))
        data = str(folder)
    elif data is None and DEFAULT_DATA.exists():
        data = str(DEFAULT_DATA)

    info = run_info(torch.device(args.device))
    tag = re.sub(r"[^A-Za-z0-9]+", "-", info["device"].split(" (")[0]).strip("-").lower()
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"gpu_proof_{tag}{'_smoke' if args.smoke else ''}{'_' + args.tag if args.tag else ''}.json"
    rec = load_record(path, info) or {"kind": "gpu_proof", **info, "stages": {}}
    rec.update(date=dt.date.today().isoformat(), command="python benchmarks/gpu_proof.py " + " ".join(argv or sys.argv[1:]))

    def save() -> None:
        write_record(path, rec, [final_table(rec)])

    sp = speed_units(args.smoke, cuda)
    for stage in stages:
        st = rec["stages"].setdefault(stage, {"units": [], "note": ""})
        done = {u["key"] for u in st["units"]}
        if stage in sp:
            units = [(unit_key(u), lambda u=u: run_speed_unit(u, args.device)) for u in sp[stage]]
        elif stage == "data":
            units = [] if data is None else [(u["name"], lambda u=u: run_data_unit(u, data, args))
                                             for u in data_units(args, data)]
        else:
            plan = [] if data is None else cifar_plan(args, data)
            units = [(r.label, lambda i=i, plan=plan: run_cifar_unit(plan, i)) for i, r in enumerate(plan)]
        if not units:
            st["note"] = "skipped: no CIFAR-10 data (give --data FOLDER or the .tar.gz archive)"
            save()
            continue
        t0, last = time.perf_counter(), 0.0
        st["note"] = ""
        for key, fn in units:
            if key in done:
                continue
            elapsed = time.perf_counter() - t0
            if elapsed + last > 60 * args.stage_minutes:
                st["note"] = f"stopped after {elapsed:.0f} s (stage limit); run the same command again to continue"
                break
            log.info("gpu proof: %s: %s", stage, key)
            u0 = time.perf_counter()
            try:
                result = fn()
            except PssError as e:
                result = {"skipped": str(e)}
            last = time.perf_counter() - u0
            st["units"].append({"key": key, "seconds": last, "result": result})
            save()
        st["seconds"] = sum(u["seconds"] for u in st["units"])
        save()
    table = final_table(rec)
    print(table)
    print(f"wrote {path} and {path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
