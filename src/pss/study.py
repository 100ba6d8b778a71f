"""Multi-run studies that survive interruption: plan every run first, then train, resume or re-read each.

    plan = [planned_run("baseline", 0, "cifar10_baseline", overrides, data, out), ...]
    summaries = run_plan(plan)                     # the same call again continues where it stopped

Used by `benchmarks/cifar10.py` and `benchmarks/recipe_study.py`. A run whose folder holds
summary.json is done (its summary is re-read), one holding checkpoint-last.pt is resumed exactly
(`pss train --resume`), anything else starts afresh. Each run's settings are kept in its folder's
`e2e_run.json`; a folder holding a run of other settings is refused before anything trains, so nothing
already in the output folder is lost. An equal-time baseline's length depends on the run it matches
(`equal_time_ratio`): its settings are planned once that run's cost is known.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pss.errors import ConfigError

log = logging.getLogger("pss.study")

__all__ = ["PlannedRun", "add_study_arguments", "equal_time_ratio", "planned_run", "record_header", "run_plan", "run_state",
           "write_record"]


def add_study_arguments(p: Any, output: Path, results: Path) -> None:
    """The options every study script shares (argparse): overrides, folders, record tag, fresh, quiet."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra recipe override for every run (e.g. --set epochs=100)")
    p.add_argument("--output", default=str(output), help="run folders go here")
    p.add_argument("--results", default=str(results), help="where the record is written")
    p.add_argument("--tag", default="", help="added to the record's file name (keeps same-day records apart)")
    p.add_argument("--fresh", action="store_true", help="start every run over instead of continuing finished/killed ones")
    p.add_argument("--quiet", action="store_true")


@dataclass
class PlannedRun:
    """One run of a study: its name, seed, resolved config and the settings that define it."""

    name: str
    seed: int
    cfg: Any  # TrainConfig
    settings: dict[str, Any]
    # Filled in just before the run trains (e.g. an equal-time baseline's length): returns extra overrides.
    late_overrides: Callable[[dict[tuple[str, int], dict[str, Any]]], list[str]] | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return f"{self.name}_s{self.seed}"

    @property
    def folder(self) -> Path:
        return Path(self.cfg.output_dir)


def planned_run(name: str, seed: int, recipe: str, overrides: list[str], data: str | None, out: Path) -> PlannedRun:
    """Resolve one run's config now (bad input fails before anything trains)."""
    from pss.train import resolve_config

    overrides = [*overrides, f"seed={seed}"]
    cfg, _ = resolve_config(recipe, overrides, data=data, output=str(out / f"{name}_s{seed}"))
    return PlannedRun(name, seed, cfg, {"recipe": recipe, "overrides": overrides, "data": data})


def run_state(folder: Path, settings: dict[str, Any], fresh: bool) -> str:
    """"done", "resume" or "fresh" for one planned run; a folder holding other settings is refused."""
    marker = folder / "e2e_run.json"
    if fresh or not marker.exists():
        return "fresh"
    before = json.loads(marker.read_text())
    if before != settings:
        raise SystemExit(f"{folder} holds a run of other settings:\n  {before}\nnow:\n  {settings}\n"
                         "run with --fresh to start over, or choose another --output")
    if (folder / "summary.json").exists():
        return "done"
    return "resume" if (folder / "checkpoint-last.pt").exists() else "fresh"


def equal_time_ratio(pss_run: PlannedRun, summaries: dict[tuple[str, int], dict[str, Any]], full: str = "baseline") -> float:
    """The cost of `pss_run` relative to the full baseline of its seed: its `budget` when it has one (a
    compute ratio, known before it trains), else its measured training time over the baseline's."""
    if pss_run.cfg.budget is not None:
        return float(pss_run.cfg.budget)
    mine, base = summaries.get((pss_run.name, pss_run.seed)), summaries.get((full, pss_run.seed))
    if not mine or not base:
        raise ConfigError(
            f"the equal-time baseline of {pss_run.name} needs its run and the {full} run of seed {pss_run.seed} first "
            "(or a budget on it)"
        )
    return min(1.0, mine["train_time_s"] / base["train_time_s"])


def _finalise(run: PlannedRun, summaries: dict[tuple[str, int], dict[str, Any]]) -> None:
    """Apply a late-planned run's extra overrides (e.g. its equal-time length) to its config."""
    if run.late_overrides is None:
        return
    from pss.train import resolve_config

    extra = run.late_overrides(summaries)
    overrides = [*run.settings["overrides"], *extra]
    run.cfg, _ = resolve_config(run.settings["recipe"], overrides, data=run.settings["data"], output=str(run.folder))
    run.settings = {**run.settings, "overrides": overrides}
    run.late_overrides = None


def run_plan(plan: list[PlannedRun], *, fresh: bool = False, quiet: bool = False,
             warm_up: Callable[[Any], None] | None = None) -> dict[tuple[str, int], dict[str, Any]]:
    """Train every planned run that is not done (in order), resuming cut-short ones; returns the summaries."""
    from pss.train import train

    summaries: dict[tuple[str, int], dict[str, Any]] = {}
    # Refuse a folder of other settings before anything trains (late runs are checked when their turn comes).
    states = {r.label: run_state(r.folder, r.settings, fresh) for r in plan if r.late_overrides is None}
    warmed = False
    for run in plan:
        if run.late_overrides is not None:
            _finalise(run, summaries)
            states[run.label] = run_state(run.folder, run.settings, fresh)
        state = states[run.label]
        if state == "done":
            log.info("study: %s (seed %d) finished earlier: %s", run.name, run.seed, run.folder)
            summaries[(run.name, run.seed)] = json.loads((run.folder / "summary.json").read_text())
            continue
        if warm_up is not None and not warmed:
            warm_up(run.cfg)  # one-time process costs are not billed to the first run that trains
            warmed = True
        log.info("study: %s %s (seed %d) -> %s", "resuming" if state == "resume" else "training", run.name, run.seed,
                 run.folder)
        run.folder.mkdir(parents=True, exist_ok=True)
        (run.folder / "e2e_run.json").write_text(json.dumps(run.settings, indent=1) + "\n")
        if state == "resume":
            summaries[(run.name, run.seed)] = train(run.cfg, resume_from=run.folder / "checkpoint-last.pt", quiet=quiet)
        else:
            summaries[(run.name, run.seed)] = train(run.cfg, overwrite=True, quiet=quiet)
    return summaries


def record_header(title: str, rec: dict[str, Any]) -> list[str]:
    """The first lines of a benchmark record's Markdown: title, versions, commit, date, command, note."""
    note = f" {rec['note']}" if rec.get("note") else ""
    return [f"# {title}", "", f"torch {rec.get('torch')}, timm {rec.get('timm')}, commit {rec.get('commit')}, "
            f"{rec.get('date')}. Command: `{rec.get('command')}`.{note}", ""]


def write_record(path: Path, rec: dict[str, Any], markdown: list[str]) -> Path:
    """A benchmark record: `path` (.json) and the same name with .md; the folder is created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec, indent=2) + "\n")
    path.with_suffix(".md").write_text("\n".join(markdown) + "\n")
    return path
