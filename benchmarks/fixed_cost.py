"""The fixed per-step cost (the part of a training step that does not shrink with the tokens), before and
after its cuts, side by side in one process with interleaved repeats.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/fixed_cost.py --repeats 5

The model and batch of the recipe study (pss_vit_tiny_patch4_32, depth 4, width 96, rel_bias; batch 64,
AdamW), on the built-in data in memory (the loader is not timed). `pss.preflight.time_steps` times
real training steps (forward, backward, clipping, optimizer, EMA) at keep ratios 1.0 ... 0.2; the fixed
part is the intercept of step time against tokens per image (least squares), reported as a share of
the full-token step. Two set-ups: the study recipe as it is (AdamW, no clipping, no EMA) and the same
with gradient clipping and an EMA (the DeiT recipe's extras).

"before" rebuilds what a step did until these cuts: torch's default AdamW on CPU (one Python loop over
the parameters), clipping over `model.parameters()` walked every step with per-tensor norms, and
timm's ModelEmaV3 (both state_dicts walked every update). "after" is what `pss train` builds now:
fused AdamW, clipping over a list collected once with multi-tensor norms, `pss.ema.Ema`.
Each repeat measures both, alternating which goes first. The fixed parts alone (`optimizer_step()`:
clipping, optimizer, EMA) are also timed call by call, the two variants alternating. Also trains both for a few steps from the same
weights on the same batches and reports how far their losses part (fused AdamW rounds differently).
Writes `benchmarks/results/fixed_cost_<device>_<date>.json` and `.md`.
"""
from __future__ import annotations

import argparse
import json
import copy
import datetime as dt
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from pss.study import CPU_REDUCED_MODEL  # noqa: E402

MODEL = json.dumps(CPU_REDUCED_MODEL)  # the CPU-reduced set-up's ViT (pss.study)
OVERRIDES = [
    "model.name=pss_vit_tiny_patch4_32", f"model.kwargs={MODEL}", "model.drop_path_rate=0.0",
    "data.path=null", "data.in_memory=true", "data.num_workers=0", "data.builtin_num_train=1024",
    "data.builtin_num_val=64", "batch_size=64", "optim.opt=adamw", "optim.lr=2.0e-3", "device=cpu", "epochs=1",
    "mixup={mixup_alpha: 0.0, cutmix_alpha: 0.0}", "lr_sched.name=none",
]
EXTRAS = ["optim.clip_grad=1.0", "ema.enabled=true", "ema.decay=0.999"]
KEEP = (1.0, 0.8, 0.6, 0.4, 0.2)


def build_trainer(overrides: list[str]):
    """The Trainer `pss train` builds for these overrides (pss.train.Run), its run folder a temporary one."""
    import tempfile

    from pss.resolve import resolve_config
    from pss.train import Run

    cfg, _ = resolve_config(None, overrides, output=tempfile.mkdtemp(prefix="pss-fixed-cost-"))
    run = Run(cfg, quiet=True).setup()
    return run.cfg, run.trainer


class _Walk:
    """`model.parameters()` walked anew on every use, as clipping did before."""

    def __init__(self, model):
        self.model = model

    def __iter__(self):
        return iter(self.model.parameters())


def as_before(cfg, trainer):
    """The same trainer with a step's fixed parts as they were: looped AdamW, walked clipping, timm's EMA."""
    from timm.optim import create_optimizer_v2
    from timm.utils import ModelEmaV3

    before = copy.copy(trainer)
    before.state = copy.copy(trainer.state)
    o = cfg.optim
    before.state.optimizer = create_optimizer_v2(trainer.model, opt=o.opt, lr=cfg.peak_lr(),
                                                 weight_decay=o.weight_decay, momentum=o.momentum)
    if trainer.state.lr_scheduler is not None:
        before.state.lr_scheduler = None
    if trainer.state.ema is not None:
        before.state.ema = ModelEmaV3(trainer.model, decay=cfg.ema.decay, use_warmup=cfg.ema.warmup)
    before._params, before._foreach = _Walk(trainer.model), None
    return before


def intercept_share(times: dict[float, float], tokens: dict[float, int]) -> tuple[float, float]:
    """(intercept in seconds, intercept / step time at rho 1) of the least-squares line step = a + b tokens."""
    xs = [tokens[r] for r in times]
    ys = list(times.values())
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    a = my - b * mx
    return a, a / times[1.0]


def fixed_parts(before, after, batch, calls: int) -> dict[str, list[float]]:
    """Seconds of `optimizer_step()` alone (clipping, optimizer, EMA; on the gradients of one backward, put
    back before every call), the two variants alternating call by call, so machine noise hits both alike."""
    import time

    state = copy.deepcopy({"m": after.model.state_dict(), "o": [t.state.optimizer.state_dict() for t in (before, after)]})
    after.set_keep_ratio(1.0)
    after.forward_backward(batch)
    params = list(after.model.parameters())
    grads = [q.grad for q in params]
    out: dict[str, list[float]] = {"before": [], "after": []}
    for i in range(2 * calls + 4):
        which = ("before", "after")[i % 2]
        for q, g in zip(params, grads):
            q.grad = g.clone()
        t0 = time.perf_counter()
        (before if which == "before" else after).optimizer_step()
        if i >= 4:
            out[which].append(time.perf_counter() - t0)
    after.model.load_state_dict(state["m"])
    for t, o in zip((before, after), state["o"]):
        t.state.optimizer.load_state_dict(o)
    return out


def losses(trainer, batches) -> list[float]:
    state = copy.deepcopy({"m": trainer.model.state_dict(), "o": trainer.state.optimizer.state_dict()})
    out = []
    torch.manual_seed(0)
    trainer.set_keep_ratio(0.6)
    for b in batches:
        loss, _ = trainer.forward_backward(b)
        trainer.optimizer_step()
        out.append(float(loss))
    trainer.model.load_state_dict(state["m"])
    trainer.state.optimizer.load_state_dict(state["o"])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=8)
    p.add_argument("--train-steps", type=int, default=10)
    p.add_argument("--calls", type=int, default=100, help="optimizer steps timed alone per variant")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--note", default="", help="recorded with the figures (e.g. the machine was shared)")
    args = p.parse_args(argv)

    from pss.control import num_tokens
    from pss.preflight import time_steps
    from pss.runtime import to_device
    from pss.runinfo import run_info
    from pss.study import record_header, write_record

    record = {"kind": "fixed_cost", "command": "python benchmarks/fixed_cost.py " + " ".join(argv or sys.argv[1:]),
              "note": args.note, "keep_ratios": list(KEEP), "repeats": args.repeats, "setups": {}}
    for name, extra in (("study recipe", []), ("with clipping + EMA", EXTRAS)):
        cfg, after = build_trainer(OVERRIDES + extra)
        before = as_before(cfg, after)
        tokens = {r: num_tokens(after.model, r) for r in KEEP}
        rows = {"before": [], "after": []}
        for rep in range(args.repeats):
            order = ("before", "after") if rep % 2 == 0 else ("after", "before")
            for which in order:
                t = time_steps(before if which == "before" else after, list(KEEP), warmup=args.warmup,
                               iters=args.iters, data_warmup=0, data_batches=1)[0]
                a, share = intercept_share(t, tokens)
                rows[which].append({"step_time_s": {f"{r:g}": v for r, v in t.items()}, "intercept_s": a, "share": share})
                print(f"{name} repeat {rep} {which}: step at rho 1 {1000 * t[1.0]:.1f} ms, intercept {1000 * a:.2f} ms "
                      f"({100 * share:.1f}%)", flush=True)
        it = iter(after.train_loader)
        batches = [to_device(next(it), after.device) for _ in range(args.train_steps)]
        parts = fixed_parts(before, after, batches[0], args.calls)
        lb, la = losses(before, batches), losses(after, batches)
        summary = {}
        for which in ("before", "after"):
            shares = [r["share"] for r in rows[which]]
            inter = [r["intercept_s"] for r in rows[which]]
            summary[which] = {"share_median": statistics.median(shares), "share_min": min(shares),
                              "share_max": max(shares), "intercept_ms_median": 1000 * statistics.median(inter),
                              "step_ms_median": 1000 * statistics.median(r["step_time_s"]["1"] for r in rows[which])}
            q = statistics.quantiles(parts[which], n=4)
            summary[which].update(fixed_parts_ms_median=1000 * statistics.median(parts[which]),
                                  fixed_parts_ms_iqr=[1000 * q[0], 1000 * q[2]])
        summary["max_abs_loss_difference"] = max(abs(x - y) for x, y in zip(lb, la))
        summary["losses_before"], summary["losses_after"] = lb, la
        record["setups"][name] = {"overrides": OVERRIDES + extra, "tokens": {f"{r:g}": n for r, n in tokens.items()},
                                  "summary": summary, "repeats": rows}
    record.update(run_info(torch.device("cpu")), date=dt.date.today().isoformat())
    md = [*record_header(f"Fixed per-step cost before / after (CPU, {record['device']})", record),
          "Fixed part = intercept of step time against tokens per image (keep ratios "
          f"{', '.join(f'{r:g}' for r in KEEP)}; {args.iters} timed steps each after {args.warmup}), as a share of "
          f"the full-token step; median (min-max) over {args.repeats} interleaved repeats.", "",
          "| set-up | before: share | after: share | before: intercept (ms) | after: intercept (ms) "
          "| step at rho 1 before / after (ms) | fixed parts alone before / after (ms, median [IQR]) "
          f"| max loss difference ({args.train_steps} steps) |", "|---|---|---|---|---|---|---|---|"]
    for name, s in record["setups"].items():
        b, a = s["summary"]["before"], s["summary"]["after"]
        md.append(f"| {name} | {100 * b['share_median']:.1f}% ({100 * b['share_min']:.1f}-{100 * b['share_max']:.1f}) "
                  f"| {100 * a['share_median']:.1f}% ({100 * a['share_min']:.1f}-{100 * a['share_max']:.1f}) "
                  f"| {b['intercept_ms_median']:.2f} | {a['intercept_ms_median']:.2f} "
                  f"| {b['step_ms_median']:.1f} / {a['step_ms_median']:.1f} "
                  f"| {b['fixed_parts_ms_median']:.2f} [{b['fixed_parts_ms_iqr'][0]:.2f}-{b['fixed_parts_ms_iqr'][1]:.2f}] / "
                  f"{a['fixed_parts_ms_median']:.2f} [{a['fixed_parts_ms_iqr'][0]:.2f}-{a['fixed_parts_ms_iqr'][1]:.2f}] "
                  f"| {s['summary']['max_abs_loss_difference']:.2e} |")
    path = write_record(Path(args.results) / f"fixed_cost_cpu_{record['date']}.json", record, md)
    print("\n".join(md))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
