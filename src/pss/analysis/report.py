"""Run reports: compare training runs from their logs alone (no model, no data, no GPU needed).

A run folder holds `train_log.jsonl`, `val_log.jsonl`, `summary.json` and `config.yaml`
(see pss.train's docstring). `write_report` turns one or more of them into

  * `report.md` / `report.json`: per run, training time, time relative to the first run, best and
    final top-1, their differences to the full baseline and (when one is given) to the equal-time
    baseline, mean keep ratio, images/s;
  * `accuracy_vs_time.png`: validation top-1 against training wall-clock time (the paper's
    "faster training" figure);
  * `epoch_step_time.png`: step time per iteration over one epoch, and the mean step time per keep
    ratio (the paper's "single epoch training time" figure);
  * `train_loss.png`: training loss against step.

The first run given is the time reference (typically the baseline without PSS); the full baseline is
the first full-token run, the equal-time baseline the run whose config has `equal_time_of` set.
"""
from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from pss.analysis.runs import ReportedRun, load_run, load_runs  # noqa: F401  (load_run: part of this module's API)

DPI = 100
FIGSIZE = (8.0, 5.0)  # inches; at DPI this is 800 x 500 pixels


# ----------------------------------------------------------------------------- table


def is_full_token(run: ReportedRun) -> bool:
    """A run at keep ratio 1.0 throughout (a baseline), from its config or its logs."""
    sched = run.config.get("schedule") or run.summary.get("schedule")
    if isinstance(sched, dict) and sched.get("name") == "fixed":
        return float(sched.get("rho", 0.0)) >= 1.0
    if isinstance(sched, (int, float)) and not isinstance(sched, bool):
        return float(sched) >= 1.0
    rho = run.mean_keep_ratio
    return rho is not None and rho >= 1.0 and not sched


def equal_time_of(run: ReportedRun) -> str | None:
    """The run this one is the equal-time baseline of (its `equal_time_of` setting), if any."""
    return run.config.get("equal_time_of") or run.summary.get("equal_time_of")


def baselines(runs: list[ReportedRun]) -> tuple[ReportedRun, ReportedRun | None]:
    """(full baseline, equal-time baseline) among `runs`: the first full-token run that is not an
    equal-time baseline (else the first run), and the first run marked as an equal-time baseline."""
    equal = next((r for r in runs if equal_time_of(r)), None)
    full = next((r for r in runs if is_full_token(r) and not equal_time_of(r)), runs[0])
    return full, equal


def _diff(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def versus(run: dict[str, Any], full: dict[str, Any] | None, equal: dict[str, Any] | None = None) -> dict[str, Any]:
    """A run against its full baseline and its equal-time baseline: the comparison every pss table shows
    (`pss report`, `pss demo`, the benchmarks' records). Each argument holds `train_time_s`, `best_acc1`
    and `final_acc1` (a summary.json, a record's run); returns `time_vs_<ref>` (training time relative to
    the reference) and `best_vs_<ref>` / `final_vs_<ref>` (top-1 differences in points), ref = `full` or
    `equal_time`; None where a reference is missing, and no difference of a run to itself."""
    out: dict[str, Any] = {}
    for label, ref in (("full", full), ("equal_time", equal)):
        t, t0 = run.get("train_time_s"), ref.get("train_time_s") if ref is not None else None
        out[f"time_vs_{label}"] = t / t0 if t is not None and t0 else None
        for key in ("best", "final"):
            out[f"{key}_vs_{label}"] = (None if ref is None or ref is run
                                        else _diff(run.get(f"{key}_acc1"), ref.get(f"{key}_acc1")))
    return out


def _numbers(run: ReportedRun) -> dict[str, Any]:
    return {"train_time_s": run.train_time_s, "best_acc1": run.best_acc1, "final_acc1": run.final_acc1}


def summary_table(runs: list[ReportedRun]) -> list[dict[str, Any]]:
    """One row per run. Time and speed-up are against the first run; top-1 differences against the
    full baseline (`*_vs_full`) and, when one is given, the equal-time baseline (`*_vs_equal_time`):
    the full-token recipe trained for the PSS run's cost (see pss.budget); `versus` computes them.
    `budget` is the budget the recipe gave and `cost_vs_full` what the run cost against the full run
    (`pss.equal_time.cost_vs_full`, also under tokens for epochs). A run that did not finish (no summary.json)
    is marked (`finished`, `progress`), and so are the differences against one (`unfinished_references`)."""
    from pss.equal_time import cost_vs_full

    ref = runs[0]
    full, equal = baselines(runs)
    numbers = {id(r): _numbers(r) for r in runs}
    rows = []
    for r in runs:
        t, t0 = r.train_time_s, ref.train_time_s
        best, final = r.best_acc1, r.final_acc1
        role = "equal-time baseline" if r is equal else "full baseline" if r is full else (
            "baseline" if is_full_token(r) else "pss")
        vs = versus(numbers[id(r)], numbers[id(full)], numbers[id(equal)] if equal is not None else None)
        cost = cost_vs_full(r.config, r.summary, full.summary if full is not r else None)
        unfinished_refs = [label for label, other in (("full", full), ("equal_time", equal))
                           if other is not None and other is not r and not other.finished]
        rows.append(
            {
                "run": r.name,
                "role": role,
                "path": str(r.path),
                "train_time_s": t,
                "time_vs_first": t / t0 if t is not None and t0 else None,
                "speedup_vs_first": t0 / t if t and t0 is not None else None,
                "best_acc1": best,
                "final_acc1": final,
                "best_acc1_diff": _diff(best, ref.best_acc1),
                **{k: vs[k] for k in ("best_vs_full", "final_vs_full", "best_vs_equal_time", "final_vs_equal_time")},
                "mean_keep_ratio": r.mean_keep_ratio,
                "images_per_s": r.images_per_s,
                "epochs": r.summary.get("epochs"),
                "steps": r.summary.get("steps", len(r.train_log) or None),
                "budget": cost.budget,
                "cost_vs_full": cost.realised if cost.realised is not None else cost.predicted,
                "device": r.summary.get("device"),
                "finished": r.finished,
                "progress": None if r.finished else r.progress(),
                "unfinished_references": unfinished_refs,
            }
        )
    return rows


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def _fmt(v: Any, spec: str, suffix: str = "") -> str:
    return "-" if v is None else f"{v:{spec}}{suffix}"


def to_markdown(rows: list[dict[str, Any]]) -> str:
    """The comparison table as Markdown (times human-readable, accuracies in the logs' units). The
    "vs equal time" columns appear when an equal-time baseline is among the runs."""
    has_equal = any(row.get("role") == "equal-time baseline" for row in rows)
    has_budget = any(row.get("budget") is not None for row in rows)
    header = ["run", "train time", "time vs first", "speed-up", "best top-1", "final top-1",
              "best vs full", "final vs full"]
    header += ["best vs equal time", "final vs equal time"] if has_equal else []
    header += ["budget (cost vs full run)"] if has_budget else []
    header += ["mean rho", "images/s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    marked = False
    for row in rows:
        against = row.get("unfinished_references") or []
        marked = marked or bool(against)

        def vs(key: str, ref: str) -> str:
            return _fmt(row.get(key), "+.2f") + (" *" if ref in against and row.get(key) is not None else "")

        cells = [
            row["run"] + ("" if row.get("finished", True) else f" (unfinished: {row.get('progress')})"),
            format_duration(row["train_time_s"]),
            _fmt(row["time_vs_first"], ".2f", "x"),
            _fmt(row["speedup_vs_first"], ".2f", "x"),
            _fmt(row["best_acc1"], ".2f"),
            _fmt(row["final_acc1"], ".2f"),
            vs("best_vs_full", "full"),
            vs("final_vs_full", "full"),
        ]
        if has_equal:
            cells += [vs("best_vs_equal_time", "equal_time"), vs("final_vs_equal_time", "equal_time")]
        if has_budget:
            cells += ["-" if row.get("budget") is None else f"{row['budget']:g}" + (
                "" if row.get("cost_vs_full") is None else f" ({row['cost_vs_full']:.3f})")]
        cells += [_fmt(row["mean_keep_ratio"], ".3f"), _fmt(row["images_per_s"], ".1f")]
        lines.append("| " + " | ".join(cells) + " |")
    if marked:
        lines += ["", "\\* against a baseline that did not finish (no summary.json): not a comparison of finished "
                  "runs; finish it (`pss train --resume`) and report again."]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- plots


def _time_unit(max_seconds: float) -> tuple[float, str]:
    """Divisor and unit name so that short runs do not all sit at 0.00 hours."""
    if max_seconds >= 2 * 3600:
        return 3600.0, "hours"
    if max_seconds >= 120:
        return 60.0, "minutes"
    return 1.0, "seconds"


def _new_figure(ncols: int = 1) -> tuple[Figure, Any]:
    width = FIGSIZE[0] if ncols == 1 else 6.0 * ncols
    fig = Figure(figsize=(width, FIGSIZE[1]), dpi=DPI, layout="constrained")
    return fig, fig.subplots(1, ncols)


def plot_accuracy_vs_time(runs: list[ReportedRun], path: str | Path) -> Path:
    """Validation top-1 against training wall-clock time, one line per run."""
    fig, ax = _new_figure()
    elapsed = [float(v["elapsed_s"]) for r in runs for v in r.val_log if v.get("elapsed_s") is not None]
    div, unit = _time_unit(max(elapsed, default=0.0))
    for r in runs:
        pts = [(float(v["elapsed_s"]) / div, float(v["acc1"])) for v in r.val_log
               if v.get("elapsed_s") is not None and v.get("acc1") is not None]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o", markersize=3, label=r.name)
    ax.set_title("Validation accuracy vs training time")
    ax.set_xlabel(f"training wall-clock time ({unit})")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(title="run")
    fig.savefig(path)
    return Path(path)


def pick_epoch(run: ReportedRun) -> int | None:
    """The epoch shown in the step-time plot: a typical one.

    Among the epochs logged in full (the first left out when there are others: it carries warm-up
    costs), the one whose total step time is the median, so a burst of load from another process
    on a shared machine does not end up in the figure.
    """
    counts: dict[int, int] = defaultdict(int)
    totals: dict[int, float] = defaultdict(float)
    for row in run.train_log:
        if row.get("epoch") is not None:
            counts[int(row["epoch"])] += 1
            totals[int(row["epoch"])] += float(row.get("step_time_s") or 0.0)
    if not counts:
        return None
    full = max(counts.values())
    epochs = sorted(e for e, n in counts.items() if n == full)
    if len(epochs) > 1 and epochs[0] == min(counts):
        epochs = epochs[1:]
    by_time = sorted(epochs, key=lambda e: (totals[e], e))
    return by_time[(len(by_time) - 1) // 2]


def step_time_by_keep_ratio(run: ReportedRun, epoch: int | None = None) -> dict[float, float]:
    """Mean step time (s) per keep ratio, over one epoch (default: `pick_epoch`) or all when None found."""
    epoch = pick_epoch(run) if epoch is None else epoch
    groups: dict[float, list[float]] = defaultdict(list)
    for row in run.train_log:
        if epoch is not None and row.get("epoch") is not None and int(row["epoch"]) != epoch:
            continue
        if row.get("keep_ratio") is None or row.get("step_time_s") is None:
            continue
        groups[round(float(row["keep_ratio"]), 4)].append(float(row["step_time_s"]))
    return {rho: statistics.fmean(ts) for rho, ts in sorted(groups.items(), reverse=True)}


def plot_epoch_step_time(runs: list[ReportedRun], path: str | Path) -> Path:
    """Left: step time per iteration over one epoch; right: mean step time per keep ratio."""
    fig, (ax, ax2) = _new_figure(2)
    for i, r in enumerate(runs):
        epoch = pick_epoch(r)
        rows = [row for row in r.train_log if row.get("step_time_s") is not None
                and (epoch is None or row.get("epoch") is None or int(row["epoch"]) == epoch)]
        if not rows:
            continue
        first = rows[0].get("step", 0)
        xs = [row.get("step", j) - first for j, row in enumerate(rows)]
        ys = [1000.0 * float(row["step_time_s"]) for row in rows]
        color = f"C{i}"
        label = r.name if epoch is None else f"{r.name} (epoch {epoch + 1})"  # from 1, as training prints
        ax.plot(xs, ys, color=color, linewidth=1, label=label)
        means = step_time_by_keep_ratio(r, epoch)
        if means:
            mean_all = 1000.0 * statistics.fmean(float(row["step_time_s"]) for row in rows)
            ax.axhline(mean_all, color=color, linestyle="--", linewidth=0.8)
            rhos = list(means)
            ax2.plot(rhos, [1000.0 * means[k] for k in rhos], color=color, marker="osD^v"[i % 5], label=r.name)
            full = means.get(1.0)
            for k in rhos:
                # the paper's numbers: time per iteration relative to rho = 1.0 of the same run
                text = f"{1000.0 * means[k]:.0f}" + (f" ({means[k] / full:.2f}x)" if full and k != 1.0 else "")
                ax2.annotate(text, (k, 1000.0 * means[k]), textcoords="offset points",
                             xytext=(0, 6 if i % 2 == 0 else -12), ha="center", fontsize=8, color=color)
    ax.set_title("Step time over one epoch (dashed: epoch mean)")
    ax.set_xlabel("iteration within epoch")
    ax.set_ylabel("step time (ms)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax2.set_title("Mean step time per keep ratio (labels: ms, relative to rho = 1)")
    ax2.set_xlabel("keep ratio rho")
    ax2.set_ylabel("mean step time (ms)")
    ax2.set_ylim(bottom=0)
    ax2.grid(alpha=0.3)
    for a in (ax, ax2):
        if a.get_legend_handles_labels()[0]:
            a.legend(title="run")
    fig.savefig(path)
    return Path(path)


def _smooth(ys: list[float], window: int) -> list[float]:
    """Trailing moving average (ignores non-finite values)."""
    out, buf = [], []
    for y in ys:
        if math.isfinite(y):
            buf.append(y)
            if len(buf) > window:
                buf.pop(0)
        out.append(statistics.fmean(buf) if buf else float("nan"))
    return out


def plot_train_loss(runs: list[ReportedRun], path: str | Path) -> Path:
    """Training loss against optimizer step (raw, faint; moving average, solid)."""
    fig, ax = _new_figure()
    for i, r in enumerate(runs):
        rows = [row for row in r.train_log if row.get("loss") is not None]
        if not rows:
            continue
        xs = [row.get("step", j) for j, row in enumerate(rows)]
        ys = [float(row["loss"]) for row in rows]
        window = max(1, len(ys) // 50)
        ax.plot(xs, ys, color=f"C{i}", alpha=0.25, linewidth=0.8)
        ax.plot(xs, _smooth(ys, window), color=f"C{i}", linewidth=1.5,
                label=r.name if window == 1 else f"{r.name} (mean of {window})")
    ax.set_title("Training loss")
    ax.set_xlabel("step (iterations)")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(title="run")
    fig.savefig(path)
    return Path(path)


# ----------------------------------------------------------------------------- all of it


def write_report(run_dirs: list[str | Path], output: str | Path, names: list[str] | None = None) -> dict[str, Any]:
    """Write the table (Markdown + JSON) and the three plots into `output`; returns what was written."""
    from pss.outputs import check_output_folder

    out = check_output_folder(output, create=True)
    runs = load_runs(run_dirs, names)
    out.mkdir(parents=True, exist_ok=True)
    rows = summary_table(runs)
    figures = {
        "accuracy_vs_time": str(plot_accuracy_vs_time(runs, out / "accuracy_vs_time.png")),
        "epoch_step_time": str(plot_epoch_step_time(runs, out / "epoch_step_time.png")),
        "train_loss": str(plot_train_loss(runs, out / "train_loss.png")),
    }
    step_times = {r.name: {str(k): v for k, v in step_time_by_keep_ratio(r).items()} for r in runs}
    result = {"runs": rows, "step_time_by_keep_ratio_s": step_times, "figures": figures}
    (out / "report.json").write_text(json.dumps(result, indent=2) + "\n")

    table = to_markdown(rows)
    full, equal = baselines(runs)
    md = ["# Training report", "", f"Time reference (first run): `{runs[0].name}`; full baseline: `{full.name}`"
          + (f"; equal-time baseline: `{equal.name}` (of {equal_time_of(equal)})" if equal is not None else
             "; no equal-time baseline given (train one with pss.budget.equal_time_overrides, e.g. as pss demo does)"),
          "", table]
    md += ["## Mean step time per keep ratio (over one typical epoch)", ""]
    for r in runs:
        means = step_time_by_keep_ratio(r)
        if means:
            cells = ", ".join(f"rho {k:g}: {1000 * v:.1f} ms" for k, v in means.items())
            epoch = pick_epoch(r)
            md.append(f"- **{r.name}** (epoch {'-' if epoch is None else epoch + 1}): {cells}")
    md += ["", "## Figures", ""]
    md += [f"![{k}]({Path(v).name})" for k, v in figures.items()]
    (out / "report.md").write_text("\n".join(md) + "\n")
    result["table_markdown"] = table
    result["paths"] = {"markdown": str(out / "report.md"), "json": str(out / "report.json")}
    return result
