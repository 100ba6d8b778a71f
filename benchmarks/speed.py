"""Training-step time per keep ratio against the FLOP ratio, for the shipped model sizes.

    python benchmarks/speed.py --device cuda                     # bf16, eager and torch.compile
    python benchmarks/speed.py --device cpu --models pss_vit_tiny_patch4_32,pss_vit_small_patch16_224

For each model (pss_vit_tiny/small/base at 224 px and the CIFAR 32 px model) and each of
eager / compiled, `pss.bench.speed_benchmark` times full training steps (forward, backward, AdamW)
after warm-up at rho = 1.0, 0.8, 0.6, 0.4, 0.2 and the eval-mode images/s, and counts the FLOP
ratio with torch.utils.flop_counter. Records `benchmarks/results/speed_<device>_<date>.json` and
`.md`, with the issue's targets checked per row: step-time ratio within 1.15x of the FLOP ratio
at rho >= 0.4 and at most 0.30 at rho = 0.2.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing, e.g. on the GPU machine

from pss.bench import format_speed_table, speed_benchmark  # noqa: E402

# model -> (batch size on the GPU, batch size on the CPU). The CPU batches keep a step near a second;
# the 32 px model's is the CPU-reduced CIFAR-10 run's batch (at batch 8 its step is mostly fixed
# per-operation overhead, see the optimizer / model columns of the table).
MODELS = {
    "pss_vit_tiny_patch16_224": (256, 16),
    "pss_vit_small_patch16_224": (256, 8),
    "pss_vit_base_patch16_224": (128, 4),
    "pss_vit_tiny_patch4_32": (512, 64),
}


def targets_met(report: dict) -> dict:
    """The issue's speed targets, checked on one report's rows."""
    rows = {round(r["keep_ratio"], 2): r for r in report["results"]}
    within = {f"{k:g}": r["relative_time"] <= 1.15 * r["flop_ratio"] for k, r in rows.items() if k >= 0.4}
    at_02 = rows[0.2]["relative_time"] <= 0.30 if 0.2 in rows else None
    return {"within_1.15x_flop_ratio": within, "rho_0.2_at_most_0.30": at_02}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--compile", default="both", choices=["both", "on", "off"])
    p.add_argument("--cpu-batch", type=int, default=None, help="batch size on CPU (default: per model, see MODELS)")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--pos-embed", default=None, help="learned | rel_bias | rope (default: the models' default)")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)

    cuda = args.device.startswith("cuda")
    compiles = {"both": [False, True], "on": [True], "off": [False]}[args.compile]
    kwargs = {"pos_embed": args.pos_embed} if args.pos_embed else {}
    reports = []
    for name in args.models.split(","):
        for comp in compiles:
            gpu_batch, cpu_batch = MODELS.get(name, (128, 8))
            rep = speed_benchmark(name, batch_size=gpu_batch if cuda else (args.cpu_batch or cpu_batch),
                                  device=args.device, amp="bf16" if cuda else "fp32", compile=comp,
                                  warmup=args.warmup, iters=args.iters, inference=True, model_kwargs=kwargs)
            rep["pos_embed"] = args.pos_embed or "default"
            rep["targets"] = targets_met(rep)
            reports.append(rep)
            print(format_speed_table(rep), "\n", flush=True)

    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    tag = re.sub(r"[^A-Za-z0-9]+", "-", reports[0]["device"].split(" (")[0]).strip("-").lower()
    suffix = f"_{args.pos_embed}" if args.pos_embed else ""
    path = out / f"speed_{tag}{suffix}_{dt.date.today().isoformat()}.json"
    path.write_text(json.dumps({"kind": "speed", "reports": reports}, indent=2) + "\n")
    md = [f"# Training-step time vs FLOP ratio ({reports[0]['device']})", "",
          f"torch {reports[0]['torch']}, timm {reports[0]['timm']}, commit {reports[0]['commit']}, {reports[0]['date']}.",
          "Median of the timed steps after warm-up; a step is forward + backward + AdamW on a batch already on the device.",
          ""]
    for rep in reports:
        md += [format_speed_table(rep), "", f"targets: {json.dumps(rep['targets'])}", ""]
    path.with_suffix(".md").write_text("\n".join(md))
    print(f"wrote {path} and {path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
