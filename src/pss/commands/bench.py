"""`pss bench speed`: training-step time per keep ratio vs the FLOP ratio; `pss bench data`: the recipe's loader."""
from __future__ import annotations

import argparse
import json

from pss.bench import data_benchmark, format_data_table, format_speed_table, speed_benchmark
from pss.bounds import bounded, check_count, check_img_size
from pss.config import parse_kwargs
from pss.checkpoint import atomic_write
from pss.errors import ConfigError
from pss.models.attention import ATTN_IMPLS
from pss.outputs import check_output_file
from pss.runtime import PRECISIONS, resolve_device
from pss.select import DEFAULT_SELECT, SELECT_RULES


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from e


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from e


def add_parser(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="speed benchmarks")
    kinds = bench.add_subparsers(dest="bench", required=True, metavar="KIND")
    p = kinds.add_parser("speed", help="training-step time per keep ratio against the FLOP ratio")
    p.add_argument("--model", default="pss_vit_small_patch16_224", help="a pss model or any timm ViT/EVA name")
    p.add_argument("--img-size", **bounded(check_img_size), default=None, help="input size (default: the model's)")
    p.add_argument("--batch-size", **bounded(check_count), default=64)
    p.add_argument("--keep", type=_floats, default=(1.0, 0.8, 0.6, 0.4, 0.2), help="keep ratios, e.g. 1.0,0.6,0.2")
    p.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:1, ...")
    p.add_argument("--amp", default="auto", choices=PRECISIONS,
                   help="auto (default): bf16 on CUDA GPUs that support it, else fp16 on CUDA; fp32 on cpu")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--attn-impl", default=None, choices=ATTN_IMPLS,
                   help="attention of pss_vit_* models: flex (FlexAttention), sdpa, or auto (flex on CUDA); "
                        "default: the model's (auto)")
    p.add_argument("--select", default=DEFAULT_SELECT, choices=SELECT_RULES,
                   help="the selection rule timed (default %(default)s, the training default)")
    p.add_argument("--warmup", **bounded(check_count, low=0), default=3)
    p.add_argument("--iters", **bounded(check_count), default=10)
    p.add_argument("--inference", action="store_true", help="also measure eval-mode images/s per keep ratio")
    p.add_argument("--set", dest="model_kwargs", action="append", default=[], metavar="KEY=VALUE",
                   help="model option, e.g. --set pos_embed=rope --set depth=6")
    p.add_argument("--output", "-o", "--json", dest="json", default=None, metavar="FILE.json",
                   help="write the results to this JSON file (--json: the old spelling)")
    p.set_defaults(func=run_speed)

    d = kinds.add_parser("data", help="images/s the recipe's training loader delivers, per worker count, and whether "
                         "PSS will pay with it",
                         description="Time the recipe's training loader (per worker count), then its model's training "
                         "step at the keep ratios its run trains (a budget solved as in pss train), and predict the "
                         "run's wall-clock time against the full-token run with this loader (will it pay).")
    d.add_argument("--config", "-c", default=None, help="recipe (default: the built-in defaults)")
    d.add_argument("--data", default=None, help="data path (overrides the recipe's data.path)")
    d.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="recipe override, e.g. --set batch_size=256")
    d.add_argument("--workers", type=_ints, default=None,
                   help="worker counts to sweep, e.g. 2,4,8 (default: the recipe's); not for data.in_memory recipes, "
                   "whose batches are made on the device (their workers only decode the set once)")
    d.add_argument("--sides", type=_floats, default=(1.0,),
                   help="training sides to time, as fractions of img_size, e.g. 1.0,0.5: a lower resolution's "
                        "decode saving (folders decode JPEGs at the side in their workers)")
    d.add_argument("--device", default=None, help="where batches go (default: the recipe's device)")
    d.add_argument("--warmup", type=int, default=3, help="batches before timing (they pay the workers' start-up)")
    d.add_argument("--batches", type=int, default=20,
                   help="batches timed per worker count (default 20; the median and p90 wait need at least 10)")
    d.add_argument("--model-iters", type=int, default=5,
                   help="training steps of the recipe's model timed per keep ratio, for the time prediction "
                   "(default 5; 0: no model, no prediction)")
    d.add_argument("--output", "-o", "--json", dest="json", default=None, metavar="FILE.json",
                   help="write the results to this JSON file (for budget_cost: measured:SPEED.json,DATA.json)")
    d.set_defaults(func=run_data)


def run_speed(args: argparse.Namespace) -> int:
    if args.batch_size < 1 or args.iters < 1 or args.warmup < 0:
        raise ConfigError("--batch-size and --iters must be >= 1 and --warmup >= 0")
    output = check_output_file(args.json, "speed.json") if args.json else None  # before the benchmark, not after
    device = str(resolve_device(args.device))  # auto -> cuda when there is one; a missing GPU is a one-line error
    if args.compile:
        from pss.dynamo import raise_recompile_limit

        # one graph per keep ratio for training steps and one per keep ratio for inference
        raise_recompile_limit(2 * len(args.keep) + 2)
    report = speed_benchmark(
        args.model, img_size=args.img_size, batch_size=args.batch_size, keep_ratios=args.keep, device=device,
        amp=args.amp, compile=args.compile, warmup=args.warmup, iters=args.iters, inference=args.inference,
        select=args.select, model_kwargs=parse_kwargs(args.model_kwargs), attn_impl=args.attn_impl,
    )
    print(format_speed_table(report))
    _write_json(output, report)
    return 0


def _write_json(output, report: dict) -> None:
    if output is not None:
        atomic_write(output, lambda f: f.write((json.dumps(report, indent=2) + "\n").encode()))
        print(f"wrote {output}")


def run_data(args: argparse.Namespace) -> int:
    from pss.resolve import resolve_config

    output = check_output_file(args.json, "data.json") if args.json else None  # before the benchmark, not after
    cfg, _ = resolve_config(args.config, args.overrides, data=args.data, output="-")
    report = data_benchmark(cfg, workers=args.workers, warmup=args.warmup, batches=args.batches, device=args.device,
                            sides=args.sides, model_iters=args.model_iters)
    print(format_data_table(report))
    _write_json(output, report)
    return 0
