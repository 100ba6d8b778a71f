"""`pss demo`: the whole story in one call - train a baseline and a PSS model, then compare them.

    result = run_demo("runs/demo")      # built-in data, a few minutes on 2 CPU cores

1. trains the recipe (configs/demo.yaml) three times with `pss.train.train`: the full baseline at
   keep ratio 1.0; PSS as the recipe says (its schedule, selection and compute `budget`); and the
   equal-time baseline, the full-token recipe trained for PSS's cost (epochs x its budget, or x its
   measured time ratio without one; LR schedule fully decayed over the shorter run);
2. sweeps the best models over keep ratios (dynamic inference: accuracy, images/s, GFLOPs);
3. writes the run report (time, accuracy against both baselines; accuracy vs time, step time per
   keep ratio) and says which run won, when the gap exceeds the validation noise;
4. draws the patches the PSS model keeps on a few validation images, and the schedules.

Output folder layout: baseline/, pss/, baseline_equal_time/ (run folders), sweep/, report/,
patches.png, schedules.png.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch

import pss
from pss.analysis import viz
from pss.analysis.report import format_duration, write_report
from pss.analysis.sweep import sweep_checkpoints, write_sweep
from pss.runtime import DistInfo, resolve_amp, resolve_device
from pss.schedule import from_dict as schedule_from_dict

log = logging.getLogger("pss.demo")

# The runs, in training order: the baseline differs from PSS in its schedule alone; the equal-time
# baseline is the baseline shortened to PSS's cost (its overrides are added once that cost is known).
RUNS: dict[str, list[str]] = {
    "baseline": ["schedule={name: fixed, rho: 1.0}", "budget=null"],
    "pss": [],
    "baseline_equal_time": ["schedule={name: fixed, rho: 1.0}", "budget=null"],
}
DEMO_KEEP_RATIOS = (1.0, 0.8, 0.6, 0.4, 0.2)


def warm_up(cfg: Any, steps: int = 3) -> None:
    """A few throw-away training steps of the recipe's model, so that one-time process costs (thread
    pools, allocator, kernel selection, lazy initialisation) are not billed to the baseline, which
    runs first, while the PSS run after it skips them: the time comparison stays fair."""
    from pss.data import check_data
    from pss.train import build_model_for, resolve_data_geometry

    device = resolve_device(cfg.device, DistInfo())
    amp = resolve_amp(cfg.amp, device)
    cfg = resolve_data_geometry(cfg, len(check_data(cfg.data).classes))  # the model the run will build
    size = cfg.model.img_size
    model = build_model_for(cfg, cfg.model.num_classes).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(cfg.batch_size // cfg.accum_steps, 3, size, size, device=device)
    y = torch.zeros(x.shape[0], dtype=torch.long, device=device)
    for i in range(steps):
        with pss.use_keep_ratio(model, 1.0 if i == 0 else 0.2 * i, cfg.select), amp.autocast():
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)


def sample_val_images(cfg: Any, count: int = 4) -> tuple[torch.Tensor, torch.Tensor, list[str], list[str], int]:
    """`count` validation images spread over the set: (inputs, display images in [0, 1], labels, class names,
    the number of validation images)."""
    from pss.data import build_datasets

    _, val, names = build_datasets(cfg.data)
    idx = torch.linspace(0, len(val) - 1, min(count, len(val))).long().tolist()
    items = [val[i] for i in idx]
    x = torch.stack([img for img, _ in items]).cpu()
    mean = torch.tensor(cfg.data.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.data.std).view(1, 3, 1, 1)
    display = (x * std + mean).clamp(0, 1).permute(0, 2, 3, 1)
    return x, display, [f"true: {names[int(y)]}" for _, y in items], list(names), len(val)


def run_demo(
    output: str | Path = "runs/demo",
    data: str | None = None,
    overrides: list[str] | None = None,
    recipe: str = "demo",
    keep_ratios: tuple[float, ...] = DEMO_KEEP_RATIOS,
    quiet: bool = False,
    fresh: bool = False,
) -> dict[str, Any]:
    """Train the three runs, sweep, report and draw; returns the paths and the comparison rows.

    Re-running continues: runs finished in `output` are kept, one cut short resumes from its last
    checkpoint (`fresh`: every run starts over).
    """
    out = Path(output)
    t0 = time.perf_counter()
    cfgs, summaries = _train_runs(out, recipe, overrides, data, quiet, fresh)
    train_s = time.perf_counter() - t0

    runs = [out / name for name in RUNS]
    log.info("demo: sweeping keep ratios %s", ", ".join(f"{r:g}" for r in keep_ratios))
    device = resolve_device(cfgs["pss"].device)
    sweep = sweep_checkpoints(runs, data=data, keep_ratios=keep_ratios,
                              batch_size=min(64, cfgs["pss"].batch_size), device=device, names=list(RUNS),
                              progress=not quiet)
    sweep_paths = write_sweep(sweep, out / "sweep")
    report = write_report(runs, out / "report", names=list(RUNS))
    patches, schedules, num_val = _pictures(out, cfgs, summaries, keep_ratios, device)
    return {
        "output": str(out),
        "total_time_s": time.perf_counter() - t0,
        "train_wall_s": train_s,
        "runs": report["runs"],
        "num_val": num_val,
        "budget": summaries["pss"].get("budget"),
        "load": machine_load(),
        "table_markdown": report["table_markdown"],
        "sweep": sweep,
        "paths": {
            "runs": [str(r) for r in runs],
            "report": report["paths"]["markdown"],
            "report_json": report["paths"]["json"],
            **{f"figure_{k}": v for k, v in report["figures"].items()},
            "sweep_json": sweep_paths["json"],
            "sweep_png": sweep_paths["png"],
            "patches_png": patches["path"],
            "schedules_png": schedules["path"],
        },
    }


def plan_demo(out: Path, recipe: str = "demo", overrides: list[str] | None = None,
              data: str | None = None) -> list[Any]:
    """The three runs (pss.study.PlannedRun, folders `out/<name>`), configs resolved now: bad input fails
    before anything trains. The equal-time baseline's length is PSS's cost against the full run
    (pss.study.planned_equal_time): the recipe's budget, or without one the measured time ratio."""
    from pss.resolve import resolve_config
    from pss.study import PlannedRun, planned_equal_time

    runs: list[Any] = []
    for name, extra in RUNS.items():
        settings = {"recipe": recipe, "overrides": [*(overrides or []), *extra], "data": data}
        cfg, _ = resolve_config(recipe, settings["overrides"], data=data, output=str(out / name))
        run = PlannedRun(name, cfg.seed, cfg, settings)
        if name == "baseline_equal_time":
            run = planned_equal_time(run, runs[1])
        runs.append(run)
    return runs


def _train_runs(out: Path, recipe: str, overrides: list[str] | None, data: str | None, quiet: bool,
                fresh: bool = False) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Train the runs in order (the equal-time baseline once PSS's cost is known), as the study harnesses
    do (pss.study.run_plan): a finished run is kept, one cut short resumes from its last checkpoint, a
    folder of other settings is refused (`fresh`: every run starts over). Their configs and summaries."""
    from pss import interrupt
    from pss.study import run_plan

    plan = plan_demo(out, recipe, overrides, data)
    interrupt.recovery_hint = lambda: (f"run the same pss demo command again to continue (finished runs in {out} "
                                       "are kept, a run cut short resumes from its last checkpoint; --fresh starts over)")
    for run in plan:
        log.info("demo: %s (%s schedule, %d epochs) -> %s", run.name, run.cfg.schedule.name, run.cfg.epochs, run.folder)
    summaries = run_plan(plan, fresh=fresh, quiet=quiet, warm_up=warm_up)
    return {run.name: run.cfg for run in plan}, {run.name: summaries[(run.name, run.seed)] for run in plan}


def _pictures(out: Path, cfgs: dict[str, Any], summaries: dict[str, dict[str, Any]], keep_ratios: tuple[float, ...],
              device: Any) -> tuple[dict[str, Any], dict[str, Any], int]:
    """The patches the PSS model keeps, and the two schedules over the run; and the validation images shown."""
    from pss.models.hub import load_model

    model, _ = load_model(out / "pss", device)
    x, display, labels, names, num_val = sample_val_images(cfgs["pss"])
    patches = viz.plot_patch_grid(model, x, display, keep_ratios, out / "patches.png", class_names=names,
                                  row_labels=labels)
    s = summaries["pss"]
    spe = max(1, s["steps"] // max(1, s["epochs"]))
    solved = {n: schedule_from_dict(summaries[n]["schedule"]) for n in ("baseline", "pss")}
    schedules = viz.plot_schedules({f"{n} ({solved[n].name})": solved[n] for n in solved},
                                   spe, s["steps"], out / "schedules.png")
    return patches, schedules, num_val


def accuracy_noise(acc_a: float, acc_b: float, num_images: int) -> float:
    """Standard error, in points, of the difference of two top-1 accuracies (%) measured on
    ``num_images`` images each (two binomial proportions; the pairing of a shared set is ignored,
    which overstates the error slightly: a verdict it allows is safe)."""
    pa, pb = acc_a / 100, acc_b / 100
    return 100 * math.sqrt((pa * (1 - pa) + pb * (1 - pb)) / max(num_images, 1))


def verdict(rows: list[dict[str, Any]], num_val: int) -> str:
    """Which run won, in plain words: PSS against the equal-time baseline (the question that matters:
    same training time, better model?) and against the full baseline; final-epoch top-1 on
    ``num_val`` validation images. A winner is named only when the gap exceeds two standard errors
    of the difference (`accuracy_noise`); otherwise it is "too close to call"."""
    by = {r["run"]: r for r in rows}
    base, pss_row, equal = by["baseline"], by["pss"], by.get("baseline_equal_time")

    def gap(other: dict[str, Any], rival: str) -> tuple[str, str]:
        a, b = pss_row["final_acc1"], other["final_acc1"]
        d, noise = a - b, 2 * accuracy_noise(a, b, num_val)
        who = ("too close to call" if abs(d) <= noise else "PSS won" if d > 0 else f"{rival} won")
        return who, f"{d:+.2f} points; the noise, two standard errors on {num_val} validation images, is {noise:.2f}"

    lines = []
    if equal is not None and pss_row["final_acc1"] is not None and equal["final_acc1"] is not None:
        who, detail = gap(equal, "the equal-time baseline")
        lines.append(
            f"Same training time: {who}. PSS {pss_row['final_acc1']:.2f}% vs {equal['final_acc1']:.2f}% for the baseline "
            f"trained for {equal['epochs']} instead of {base['epochs']} epochs ({detail}; final epoch)."
        )
    if pss_row["final_acc1"] is not None and base["final_acc1"] is not None:
        who, detail = gap(base, "the full baseline")
        lines.append(
            f"Against the full baseline ({base['final_acc1']:.2f}%): {who} ({detail}), in "
            f"{pss_row['time_vs_first']:.2f}x its training time."
        )
    lines.append("One seed each: seed-to-seed variation comes on top of that noise; repeat with other seeds "
                 "(--set seed=N) before trusting a small difference.")
    return "\n".join(lines)


def budget_line(bud: dict[str, Any]) -> str:
    """What the PSS run's budget (summary.json's `budget`) did, against the full run of the recipe
    (`pss.equal_time.cost_vs_full`): the budget the recipe gave first, then the cost against the full run."""
    from pss.equal_time import cost_vs_full

    cost = cost_vs_full(summary={"budget": bud})
    ref = bud.get("reference")  # tokens for epochs: the recipe's budget, spent over more epochs
    spent = "" if not ref else (f", spent as {ref['epochs'] * ref['epochs_factor']:.0f} epochs instead of "
                                f"{ref['epochs']} at {bud['budget']:g} of each")
    realised = "" if cost.realised is None else f", realised {cost.realised:.3f}"
    return (f"Budget {cost.budget:g} of the full run's FLOPs{spent}: pss set "
            f"{bud['schedule']['name']} {bud['parameter']} = {bud['value']:g} (predicted cost "
            f"{cost.predicted:.3f}{realised} of the full run).")


def machine_load() -> tuple[float, int] | None:
    """(the 1-minute load average at the end of the runs, the CPU cores this process may use), or None."""
    import os

    if not hasattr(os, "getloadavg"):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return os.getloadavg()[0], cores


def time_line(pss_row: dict[str, Any], load: tuple[float, int] | None) -> str:
    """The measured wall-clock of the PSS run against the actual full run (not against its own full-token
    steps), and whether the machine was shared while they ran (a load average above the cores)."""
    ratio = pss_row.get("time_vs_first")
    text = "" if ratio is None else f"Measured time: PSS took {ratio:.3f} of the full run's wall clock."
    if load is not None and load[0] > load[1] + 0.5:
        text += (f" The machine was shared (load average {load[0]:.1f} on {load[1]} cores): the times are less "
                 "exact than the accuracies; re-run on an idle machine to time them.")
    return text.strip()


def format_demo(result: dict[str, Any]) -> str:
    """The text `pss demo` prints: comparison table, who won, dynamic inference, where the pictures are."""
    base, pss_row = result["runs"][0], result["runs"][1]
    lines = ["", "== PSS demo: baseline, PSS, and the baseline given PSS's training time ==", "",
             result["table_markdown"].rstrip(), ""]
    if base["train_time_s"] and pss_row["train_time_s"]:
        diff = pss_row.get("best_acc1_diff")
        lines.append(
            f"PSS trained in {format_duration(pss_row['train_time_s'])} instead of "
            f"{format_duration(base['train_time_s'])}: {pss_row['speedup_vs_first']:.2f}x faster, "
            f"best top-1 {pss_row['best_acc1']:.2f}% vs {base['best_acc1']:.2f}%"
            + (f" ({diff:+.2f} points)." if diff is not None else ".")
        )
    bud = result.get("budget")
    if bud:
        lines.append(budget_line(bud))
    if time_line(pss_row, result.get("load")):
        lines.append(time_line(pss_row, result.get("load")))
    lines += ["", verdict(result["runs"], result["num_val"])]
    lines += ["", "Dynamic inference (top-1 % at keep ratio rho; images/s of the model alone):"]
    entries = result["sweep"]["checkpoints"]
    rhos = [r["keep_ratio"] for r in entries[0]["results"]]
    lines.append("  " + f"{'rho':<20}" + "".join(f"{r:>9g}" for r in rhos))
    for e in entries:
        lines.append("  " + f"{e['name']:<20}" + "".join(f"{r['acc1']:>8.1f}%" for r in e["results"]))
    pss_entry = next((e for e in entries if e["name"] == "pss"), entries[-1])
    lines.append("  " + f"{'images/s (pss)':<20}" + "".join(f"{r['images_per_s']:>9.0f}" for r in pss_entry["results"]))
    p = result["paths"]
    lines += [
        "",
        f"report:      {p['report']}",
        f"pictures:    {p['figure_accuracy_vs_time']}",
        f"             {p['figure_epoch_step_time']}",
        f"             {p['figure_train_loss']}",
        f"             {p['sweep_png']}",
        f"             {p['patches_png']}",
        f"             {p['schedules_png']}",
        f"runs:        {', '.join(p['runs'])}",
        f"total time:  {format_duration(result['total_time_s'])}",
    ]
    return "\n".join(lines)
