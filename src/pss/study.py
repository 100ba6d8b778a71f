"""Multi-run studies that survive interruption: plan every run first, then train, resume or re-read each.

    plan = [planned_run("baseline", 0, "cifar10_baseline", overrides, data, out), ...]
    summaries = run_plan(plan)                     # the same call again continues where it stopped

Used by every script under `benchmarks/`, which share its set-ups (`CPU_REDUCED`, adjusted with `derive`;
the studies' `STUDY_CPU` and `STUDY_CPU_ROPE` and their arms, `study_arm`), its reading of committed records
(`recorded_summaries`) and its one way of writing a record (`write_record`). A run whose folder holds
summary.json is done (its summary is re-read), one holding checkpoint-last.pt is resumed exactly
(`pss train --resume`), anything else starts afresh. Each run's settings are kept in its folder
(`RunDir.write_study_settings`: e2e_run.json); a folder holding a run of other settings is refused before
anything trains, so nothing already in the output folder is lost. An equal-time baseline's length depends on the run it matches
(`equal_time_ratio`): its settings are planned once that run's cost is known.
"""
from __future__ import annotations

import json
import logging
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pss.errors import ConfigError
from pss.runfolder import RunDir

log = logging.getLogger("pss.study")

__all__ = [
    "CPU_REDUCED",
    "CPU_REDUCED_MODEL",
    "PlannedRun",
    "RECORD_SUMMARY_KEYS",
    "STUDY_CPU",
    "STUDY_CPU_ROPE",
    "STUDY_GRID",
    "STUDY_RECIPE",
    "TOKENS_FOR_EPOCHS",
    "add_study_arguments",
    "derive",
    "equal_time_ratio",
    "per_seed",
    "planned_equal_time",
    "planned_run",
    "record_header",
    "recorded_summaries",
    "run_plan",
    "run_state",
    "study_arm",
    "write_record",
]

# The CPU-reduced set-up of the benchmarks, as recipe overrides on the CIFAR-10 recipes: a 4-block ViT of
# width 96 on a class-balanced CIFAR-10 subset (500 training, 200 test images per class), batch 64, 10
# epochs, no Mixup / CutMix / erasing / label smoothing (too few epochs for them to pay off). It shows
# the ratios between runs measured side by side, not CIFAR-10's accuracy; records say they used it.
CPU_REDUCED_MODEL = {"depth": 4, "embed_dim": 96, "num_heads": 3, "pos_embed": "rel_bias"}
CPU_REDUCED = [
    "model.kwargs={" + ", ".join(f"{k}: {v}" for k, v in CPU_REDUCED_MODEL.items()) + "}",
    "model.drop_path_rate=0.0",
    "data.max_train_per_class=500",
    "data.max_val_per_class=200",
    "data.num_workers=2",
    "data.re_prob=0.0",
    "mixup={mixup_alpha: 0.0, cutmix_alpha: 0.0}",
    "label_smoothing=0.0",
    "epochs=10",
    "batch_size=64",
    "lr_sched.warmup_epochs=1",
    "optim.base_lr=2.0e-3",
    "optim.base_batch_size=64",
    "eval.interval=1",
    "log_interval=10",
    "checkpoint_interval_epochs=100",
    "device=cpu",
]


def derive(base: list[str], changes: dict[str, Any]) -> list[str]:
    """`base` (`key=value` overrides) with some keys' values changed in place or, for None, left out: a
    variant of a set-up that stays comparable line by line (a study's resume check compares the lists)."""
    keys = [o.partition("=")[0] for o in base]
    unknown = sorted(set(changes) - set(keys))
    if unknown:
        raise ConfigError(f"derive: {', '.join(unknown)} not in the set-up; add it as an override instead")
    return [o if k not in changes else f"{k}={changes[k]}" for o, k in zip(base, keys) if changes.get(k, o) is not None]


# The set-up of the recipe, budget and token studies (benchmarks/recipe_study.py, budget_study.py,
# token_study.py): the CPU-reduced set-up with twice the training images (1,000 per class), 15 epochs, a
# checkpoint every epoch, on the full-token CIFAR-10 recipe; the model's kwargs are given per arm. A run's
# overrides are the key by which a study recognises it (in its folder, in a committed record): change none
# of these values without re-recording every study that used them.
STUDY_RECIPE = "cifar10_baseline"
STUDY_CPU = derive(CPU_REDUCED, {"model.kwargs": None, "data.max_train_per_class": 1000, "epochs": 15,
                                 "log_interval": 20, "checkpoint_interval_epochs": 1})
# The budget and token studies': the same with rotary position embedding, every arm on one keep-ratio grid.
STUDY_CPU_ROPE = [*STUDY_CPU, "model.kwargs=" + json.dumps({**CPU_REDUCED_MODEL, "pos_embed": "rope"})]
STUDY_GRID = 0.1
TOKENS_FOR_EPOCHS = 1.5  # the studies' epochs factor of tokens for epochs (`budget_epochs`)


def study_arm(arm: str, budget: float) -> list[str]:
    """The overrides of one arm of the budget study (which the token study reuses), on top of
    `STUDY_CPU_ROPE` and its horizon: full, recommended (= cyclic), jitter, paper, fixed, tokens_for_epochs."""
    cyclic = f"schedule={{name: cyclic, low: 0.2, high: 1.0, grid: {STUDY_GRID}}}"
    fixed = f"schedule={{name: fixed, rho: 0.6, grid: {STUDY_GRID}}}"
    arms = {
        "full": [f"schedule={{name: fixed, rho: 1.0, grid: {STUDY_GRID}}}"],
        "recommended": [cyclic, "select=random", f"budget={budget}"],
        "cyclic": [cyclic, "select=random", f"budget={budget}"],
        "jitter": [cyclic, "select=jitter", f"budget={budget}"],  # trained on jittered grids, for the grid dial
        "paper": [cyclic, "select=magnitude", f"budget={budget}"],
        "fixed": [fixed, "select=random", f"budget={budget}"],
        "tokens_for_epochs": [fixed, "select=random", f"budget={budget}", f"budget_epochs={TOKENS_FOR_EPOCHS}"],
    }
    if arm not in arms:
        raise ConfigError(f"unknown arm {arm!r}; choose from {', '.join(arms)}")
    return arms[arm]


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


def planned_run(name: str, seed: int, recipe: str, overrides: list[str], data: str | None, out: Path,
                folder: str | None = None) -> PlannedRun:
    """Resolve one run's config now (bad input fails before anything trains); its folder is
    `out/<folder>`, by default `out/<name>_s<seed>`."""
    from pss.resolve import resolve_config

    overrides = [*overrides, f"seed={seed}"]
    cfg, _ = resolve_config(recipe, overrides, data=data, output=str(out / (folder or f"{name}_s{seed}")))
    return PlannedRun(name, seed, cfg, {"recipe": recipe, "overrides": overrides, "data": data})


def run_state(folder: Path, settings: dict[str, Any], fresh: bool) -> str:
    """"done", "resume" or "fresh" for one planned run; a folder holding other settings is refused."""
    run = RunDir(folder)
    before = None if fresh else run.read_study_settings()
    if before is None:
        return "fresh"
    if before != settings:
        raise ConfigError(f"{folder} holds a run of other settings ({before}; now {settings}): "
                          "run with --fresh to start over, or choose another --output")
    if run.is_finished(settings):
        return "done"
    return "resume" if run.last.exists() else "fresh"


def equal_time_ratio(pss_run: PlannedRun, summaries: dict[tuple[str, int], dict[str, Any]], full: str = "baseline") -> float:
    """The cost of `pss_run` relative to the full baseline of its seed (`pss.equal_time.cost_vs_full`): the
    recipe's budget when it has one (known before it trains; under tokens for epochs not the longer run's
    own share), else its measured training time over the baseline's. The length of its equal-time baseline
    is this share of the baseline's epochs."""
    from pss.equal_time import cost_vs_full

    mine, base = summaries.get((pss_run.name, pss_run.seed)), summaries.get((full, pss_run.seed))
    if pss_run.cfg.budget is None and (not mine or not base):
        raise ConfigError(
            f"the equal-time baseline of {pss_run.name} needs its run and the {full} run of seed {pss_run.seed} first "
            "(or a budget on it)"
        )
    return cost_vs_full(pss_run.cfg, mine, base).ratio


def planned_equal_time(run: PlannedRun, of: PlannedRun, full: str = "baseline") -> PlannedRun:
    """`run` (a full-token run's plan) as the equal-time baseline of `of`: its epochs (LR warm-up and
    cool-down alike) are `of`'s cost against the full run (`equal_time_ratio`, `pss.equal_time.cost_vs_full`)
    times the full run's. Planned now when `of` has a budget (bad input fails before anything trains),
    else once `of` and the `full` run of its seed have trained (their measured time ratio). `of.name` is
    recorded as the run it is the baseline of (`equal_time_of`)."""
    from pss.equal_time import cost_vs_full, equal_time_overrides

    base = run.cfg
    late = PlannedRun(run.name, run.seed, run.cfg, run.settings, late_overrides=lambda summaries: equal_time_overrides(
        base, equal_time_ratio(of, summaries, full), of.name))
    if cost_vs_full(of.cfg).budget is not None:
        _finalise(late, {})
    return late


def _finalise(run: PlannedRun, summaries: dict[tuple[str, int], dict[str, Any]]) -> None:
    """Apply a late-planned run's extra overrides (e.g. its equal-time length) to its config."""
    if run.late_overrides is None:
        return
    from pss.resolve import resolve_config

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
            summaries[(run.name, run.seed)] = RunDir(run.folder).read_summary()
            continue
        if warm_up is not None and not warmed:
            warm_up(run.cfg)  # one-time process costs are not billed to the first run that trains
            warmed = True
        log.info("study: %s %s (seed %d) -> %s", "resuming" if state == "resume" else "training", run.name, run.seed,
                 run.folder)
        RunDir(run.folder).write_study_settings(run.settings)
        if state == "resume":
            summaries[(run.name, run.seed)] = train(run.cfg, resume_from=RunDir(run.folder).last, quiet=quiet)
        else:
            summaries[(run.name, run.seed)] = train(run.cfg, overwrite=True, quiet=quiet)
    return summaries


def record_header(title: str, rec: dict[str, Any]) -> list[str]:
    """The first lines of a benchmark record's Markdown: title, versions, commit, date, command, note."""
    note = f" {rec['note']}" if rec.get("note") else ""
    return [f"# {title}", "", f"torch {rec.get('torch')}, timm {rec.get('timm')}, commit {rec.get('commit')}, "
            f"{rec.get('date')}. Command: `{rec.get('command')}`.{note}", ""]


def per_seed(v: list[float] | None) -> str:
    """A difference in points as the study records print it: mean over seeds, then each seed's in brackets."""
    if not v:
        return "-"
    return f"{statistics.fmean(v):+.2f} ({' / '.join(f'{x:+.1f}' for x in v)})"


# What a study's record keeps of each run's summary.json: enough to rebuild its row without the run folder.
RECORD_SUMMARY_KEYS = ("train_time_s", "data_wait_fraction", "best_acc1", "final_acc1", "best_epoch",
                       "mean_keep_ratio", "schedule", "budget", "epochs", "steps", "images_per_s", "device", "torch",
                       "timm", "commit")


def recorded_summaries(results: Path, patterns: tuple[str, ...]) -> dict[tuple[str, int, tuple[str, ...]], dict[str, Any]]:
    """(name, seed, overrides) -> summary of every run kept in the records under `results` that `patterns`
    name (globs; within a pattern the newest record wins): what a study need not train again."""
    out: dict[tuple[str, int, tuple[str, ...]], dict[str, Any]] = {}
    for path in [p for pattern in patterns for p in sorted(Path(results).glob(pattern))]:
        try:
            rec = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"record {path} is unreadable ({e}); restore it from version control") from None
        for row in rec.get("runs", []):
            if "summary" in row and "overrides" in row:
                out[(row["name"], row["seed"], tuple(row["overrides"]))] = row["summary"]
    return out


def write_record(path: Path, rec: dict[str, Any], markdown: str | list[str]) -> Path:
    """A benchmark record, the one way every script under `benchmarks/` writes one: `path` (.json) and the
    same name with .md (`markdown`: the text, or its lines), which is what the results page shows
    (benchmarks/results_page.py); the folder is created. Records are written by scripts, never by hand."""
    text = markdown if isinstance(markdown, str) else "\n".join(markdown) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec, indent=2) + "\n")
    path.with_suffix(".md").write_text(text)
    return path
