"""Training-step time per keep ratio against the FLOP ratio: SDPA vs FlexAttention, rel_bias vs rope.

    python benchmarks/speed.py --device cuda         # ViT-S and ViT-B, batch 256, bf16: the issue's table
    python benchmarks/speed.py --device cpu --models pss_vit_tiny_patch4_32 --compile off

Where one command may run only so long, split it; each writes its own files (named by models and
compile setting) and keeps what it measured if cut short:
    python benchmarks/speed.py --device cuda --compile off
    python benchmarks/speed.py --device cuda --compile on --models pss_vit_small_patch16_224
    python benchmarks/speed.py --device cuda --compile on --models pss_vit_base_patch16_224

For each model, compile setting (eager / torch.compile), position scheme (`--pos-embeds`) and attention
implementation (`--attn-impls`), `pss.bench.speed_benchmark` times full training steps (forward,
backward, AdamW) after warm-up at rho = 1.0, 0.8, 0.6, 0.4, 0.2, counts the FLOP ratio, records the
attention kernels a step ran and (CUDA) the peak memory. Prints a short side-by-side table per model
and compile setting, and records `benchmarks/results/speed_<device>_attn_<models>_<compile>_<date>.json`
and `.md`
(device, torch / timm versions, commit), rewritten after every configuration so a run cut short keeps
what it measured. A configuration the device cannot train (FlexAttention has no CPU backward) is
recorded as skipped, with the reason.

Targets (GPU): rel_bias step-time ratio at rho 0.2 <= 0.25 and within 1.15x of the FLOP
ratio at every rho >= 0.4; rel_bias full-token step time within 10 % of rope's; the flex path's peak
memory at rho 1.0 below the SDPA-with-mask path's.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing
sys.path.insert(0, str(ROOT / "benchmarks"))  # results_page, beside this script

from results_page import write as write_results_page  # noqa: E402
from pss.bench import format_speed_table, speed_benchmark  # noqa: E402
from pss.errors import ConfigError  # noqa: E402
from pss.study import write_record  # noqa: E402

# model -> (batch size on the GPU, batch size on the CPU). The CPU batches keep a step near a second;
# the 32 px model's is the CPU-reduced CIFAR-10 run's batch.
MODELS = {
    "pss_vit_tiny_patch16_224": (256, 16),
    "pss_vit_small_patch16_224": (256, 8),
    "pss_vit_base_patch16_224": (256, 4),
    "pss_vit_tiny_patch4_32": (512, 64),
}
GPU_DEFAULT_MODELS = "pss_vit_small_patch16_224,pss_vit_base_patch16_224"


def targets_met(report: dict) -> dict:
    """The issue's per-report speed targets: within 1.15x of the FLOP ratio at rho >= 0.4, <= 0.25 at rho 0.2."""
    rows = {round(r["keep_ratio"], 2): r for r in report["results"]}
    within = {f"{k:g}": r["relative_time"] <= 1.15 * r["flop_ratio"] for k, r in rows.items() if k >= 0.4}
    at_02 = rows[0.2]["relative_time"] <= 0.25 if 0.2 in rows else None
    return {"within_1.15x_flop_ratio": within, "rho_0.2_at_most_0.25": at_02}


def _key(rep: dict) -> tuple:
    return rep["model"], rep["compile"], rep["pos_embed"], rep["attn_impl"]


def cross_targets(reports: list[dict]) -> dict:
    """Targets across reports, per model and compile setting: rel_bias full-token step time within 10 %
    of rope's on SDPA (rope's fused path), and flex's peak memory at rho 1.0 below SDPA's (rel_bias)."""
    by = {_key(r): r for r in reports if "results" in r}
    out = {}
    for (model, comp, pos, impl), rep in by.items():
        tag = f"{model}{' compiled' if comp else ''}"
        t1 = rep["results"][0]["step_time_s"]
        rope = by.get((model, comp, "rope", "sdpa"))
        if pos == "rel_bias" and rope is not None:
            out[f"{tag}: rel_bias {impl} rho=1 within 10% of rope sdpa"] = t1 <= 1.10 * rope["results"][0]["step_time_s"]
        sdpa = by.get((model, comp, pos, "sdpa"))
        if pos == "rel_bias" and impl == "flex" and sdpa is not None and rep["results"][0]["peak_memory_mb"]:
            out[f"{tag}: flex peak memory at rho=1 below sdpa"] = (
                rep["results"][0]["peak_memory_mb"] < sdpa["results"][0]["peak_memory_mb"])
    return out


def side_by_side(reports: list[dict]) -> str:
    """Short table per model and compile setting: step-time ratio of every (pos_embed, attn_impl) per rho,
    against the FLOP ratio; the rho = 1 step time and peak memory under it."""
    lines = []
    groups: dict[tuple, list[dict]] = {}
    for r in reports:
        groups.setdefault((r["model"], r["compile"]), []).append(r)
    for (model, comp), reps in groups.items():
        ran = [r for r in reps if "results" in r]
        cols = [f"{r['pos_embed']} {r['attn_impl']}" for r in ran]
        lines += [f"{model}, batch {reps[0]['batch_size']}, {reps[0]['amp']}, {'compiled' if comp else 'eager'}", "",
                  "| keep ratio | FLOP ratio | " + " | ".join(cols) + " |", "|---" * (2 + len(cols)) + "|"]
        if ran:
            for i, row in enumerate(ran[0]["results"]):
                cells = [f"{r['results'][i]['relative_time']:.3f}" for r in ran]
                lines.append(f"| {row['keep_ratio']:.2f} | {row['flop_ratio']:.3f} | " + " | ".join(cells) + " |")
            lines.append("| rho=1 step (ms) | | " + " | ".join(f"{1000 * r['results'][0]['step_time_s']:.1f}" for r in ran) + " |")
            mems = [r["results"][0]["peak_memory_mb"] for r in ran]
            if any(mems):
                lines.append("| rho=1 peak (MB) | | " + " | ".join(f"{m:.0f}" for m in mems) + " |")
            lines.append("| attention kernels (rho=1) | | " + " | ".join(
                ", ".join(k.replace("aten::", "") for k in r["results"][0]["attention_kernels"]) or "-" for r in ran) + " |")
        lines += [f"skipped {r['pos_embed']} {r['attn_impl']}: {r['skipped']}" for r in reps if "skipped" in r]
        lines.append("")
    return "\n".join(lines)


def _write(path: Path, reports: list[dict]) -> None:
    ran = [r for r in reports if "results" in r] or reports
    info = ran[0]
    record = {"kind": "speed_attn", "device": info.get("device"), "torch": info.get("torch"), "timm": info.get("timm"),
              "commit": info.get("commit"), "date": info.get("date"), "cross_targets": cross_targets(reports),
              "reports": reports}
    md = [f"# Training-step time vs FLOP ratio: attention implementations ({record['device']})", "",
          f"torch {record['torch']}, timm {record['timm']}, commit {record['commit']}, {record['date']}.",
          "Median of the timed steps after warm-up; a step is forward + backward + AdamW on a batch already on the device.",
          "Columns of the short tables: step time / step time at rho = 1 of the same configuration.", "",
          side_by_side(reports), f"cross-configuration targets: {json.dumps(record['cross_targets'])}", "", "## Per configuration", ""]
    for rep in ran:
        if "results" in rep:
            md += [format_speed_table(rep), "", f"targets: {json.dumps(rep['targets'])}", ""]
    write_record(path, record, md)
    write_results_page(path.parent)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--models", default=None, help=f"comma-separated (default: {GPU_DEFAULT_MODELS} on CUDA, "
                                                  "pss_vit_tiny_patch4_32 on CPU)")
    p.add_argument("--pos-embeds", default="rel_bias,rope", help="position schemes to compare")
    p.add_argument("--attn-impls", default="sdpa,flex", help="attention implementations to compare")
    p.add_argument("--compile", default="both", choices=["both", "on", "off"])
    p.add_argument("--batch", type=int, default=None, help="batch size (default: per model and device, see MODELS)")
    p.add_argument("--keep", default="1.0,0.8,0.6,0.4,0.2", help="keep ratios")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--inference", action="store_true", help="also time eval-mode images/s")
    p.add_argument("--set", dest="model_kwargs", action="append", default=[], metavar="KEY=VALUE",
                   help="model option for every configuration, e.g. --set depth=6")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--tag", default="", help="added to the result file names")
    args = p.parse_args(argv)

    import yaml

    cuda = args.device.startswith("cuda")
    models = (args.models or (GPU_DEFAULT_MODELS if cuda else "pss_vit_tiny_patch4_32")).split(",")
    compiles = {"both": [False, True], "on": [True], "off": [False]}[args.compile]
    keep = tuple(float(v) for v in args.keep.split(","))
    extra = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in args.model_kwargs)}
    out = Path(args.results)
    reports: list[dict] = []
    path = None
    for name in models:
        gpu_batch, cpu_batch = MODELS.get(name, (128, 8))
        batch = args.batch or (gpu_batch if cuda else cpu_batch)
        for comp in compiles:
            for pos in args.pos_embeds.split(","):
                for impl in args.attn_impls.split(","):
                    base = dict(model=name, compile=comp, pos_embed=pos, attn_impl=impl, batch_size=batch,
                                amp="bf16" if cuda else "fp32")
                    try:
                        rep = speed_benchmark(name, batch_size=batch, keep_ratios=keep, device=args.device,
                                              amp=base["amp"], compile=comp, warmup=args.warmup, iters=args.iters,
                                              inference=args.inference, model_kwargs={**extra, "pos_embed": pos},
                                              attn_impl=impl)
                    except ConfigError as e:  # e.g. flex on a device without its backward
                        rep = {**base, "skipped": str(e)}
                        print(f"skipped {name} {pos} {impl}{' compiled' if comp else ''}: {e}", flush=True)
                    else:
                        rep.update(attn_impl=impl, targets=targets_met(rep))
                        print(format_speed_table(rep), "\n", flush=True)
                    reports.append(rep)
                    if path is None and "results" in rep:
                        tag = re.sub(r"[^A-Za-z0-9]+", "-", rep["device"].split(" (")[0]).strip("-").lower()
                        short = "-".join(m.removeprefix("pss_vit_") for m in models)
                        comp_tag = {"both": "eager+compiled", "on": "compiled", "off": "eager"}[args.compile]
                        extra_tag = f"_{args.tag}" if args.tag else ""
                        path = out / f"speed_{tag}_attn_{short}_{comp_tag}{extra_tag}_{dt.date.today().isoformat()}.json"
                    if path is not None:
                        _write(path, reports)
    print(side_by_side(reports))
    print(f"cross-configuration targets: {json.dumps(cross_targets(reports))}")
    if path is not None:
        print(f"wrote {path} and {path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    from pss.cli import guarded  # a ConfigError is one line, a signal exit code 130

    raise SystemExit(guarded("speed.py", main))
