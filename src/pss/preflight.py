"""Will PSS pay on this machine? Predict a run's wall-clock ratio to the full-token run from measured
model step times and the loader's measured supply, before the run trains.

    meas = Measurements(step_time_s={1.0: 0.100, 0.6: 0.060}, data_time_s=0.080, batch_size=128, overlap=True)
    pred = predict(meas, schedule.values(steps_per_epoch, total_steps))
    pred.time_ratio, pred.model_time_ratio, pred.bound, pred.message    # 0.889, 0.640, "mixed", "..."

A step costs the model's time m(rho) (forward, backward, optimizer, clipping, EMA: everything the run
does per step) and the loader's time d per batch (decoding, augmenting, moving it to the device).
How the two combine depends on where the loader runs:

  * worker processes on cores the model does not use (`overlap`): the loader prepares the next
    batches while the model trains, so a step takes max(m(rho), d). Below the keep ratio where
    m(rho) < d the run is *data-bound*: fewer tokens no longer make steps shorter.
  * in the training process (`data.in_memory`, `data.num_workers: 0`) or on the same cores as a CPU
    model (workers and model then share the cores): the times add, m(rho) + d.

The predicted time ratio of the run is sum over steps of step(rho) / (steps x step(1.0)); the model's
ratio alone (what a user would expect if data were free) is printed next to it, so a data wall shows
as the gap between the two. `MeasuredCost` turns the same measurements into the cost model of
`budget_cost: measured` (pss.budget), so a budget buys only keep ratios the loader can feed.

Measurements come from the run itself (`measure_run`: `time_steps` times real steps on the run's model
through a Trainer without logs or checkpoints, every state restored afterwards; `time_loader` the
loader's first batches) or from files (`measurements_from_files`: `pss bench speed --json` for the
model, `pss bench data --json` for the loader). A pss.train.Run asks here for both, once: the budget
(pss.budget.plan) and the prediction use the same measurements.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import os
import statistics
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pss.errors import ConfigError

log = logging.getLogger("pss.train")  # the run's log: the pre-flight speaks while a run is set up

__all__ = [
    "Measurements",
    "Prediction",
    "data_pipeline",
    "loader_placement",
    "MeasuredCost",
    "measure_run",
    "measurement_ratios",
    "measurements_for_run",
    "measurements_from_files",
    "PREFLIGHT_MIN_STEPS",
    "predict",
    "predict_run",
    "probe",
    "ratios_to_time",
    "read_data_report",
    "time_loader",
    "time_steps",
    "with_loader_named",
]

# A step is data-bound at a keep ratio when the loader's time per batch exceeds the model's by this share.
_BOUND_MARGIN = 1.02
# Runs shorter than this skip the pre-flight under `preflight: auto` (its few dozen steps would be a
# visible share of the run).
PREFLIGHT_MIN_STEPS = 500
# The loader's median and p90 wait per batch are given from this many timed batches on (fewer: the mean only).
MIN_QUANTILE_BATCHES = 10


@dataclass
class Measurements:
    """Model step time per keep ratio (seconds, per optimizer step of `batch_size` images per process) and
    the loader's time per batch; `overlap`: the loader runs beside the model (see the module docstring)."""

    step_time_s: dict[float, float]
    data_time_s: float
    batch_size: int
    overlap: bool
    source: str = "measured in the run"
    loader: str = ""  # e.g. "folder, 2 workers" (for the message)

    def __post_init__(self) -> None:
        """Every time a finite number, step times > 0 at keep ratios in (0, 1], the loader's >= 0: a file
        holding 0, -1, NaN, inf or text would otherwise solve a nonsense schedule (predicted cost 0)."""
        where = f" ({self.source})" if self.source else ""

        def seconds(value: Any, what: str, least_open: bool) -> float:
            try:
                t = float(value)
            except (TypeError, ValueError):
                t = math.nan
            if not math.isfinite(t) or t < 0 or (least_open and t == 0):
                raise ConfigError(f"{what} is {value!r}{where}: a time must be a finite number of seconds "
                                  f"{'> 0' if least_open else '>= 0'}; measure again (pss bench speed / pss bench data)")
            return t

        if not isinstance(self.step_time_s, dict) or not self.step_time_s:
            raise ConfigError(f"no step times{where}; measure them with pss bench speed --json")
        times = {}
        for r, t in self.step_time_s.items():
            rho = seconds(r, "a keep ratio", True)
            if rho > 1:
                raise ConfigError(f"a keep ratio is {r!r}{where}: keep ratios are in (0, 1]")
            times[round(rho, 6)] = seconds(t, f"the step time at keep ratio {rho:g}", True)
        self.step_time_s = times
        self.data_time_s = seconds(self.data_time_s, "the loader's time per batch", False)
        if 1.0 not in self.step_time_s:
            raise ConfigError("step times need keep ratio 1.0, the reference")

    def cost_model(self) -> MeasuredCost:
        """The cost model of `budget_cost: measured` on these measurements (pss.budget.cost_model)."""
        return MeasuredCost(self)

    def model_time(self, rho: float) -> float:
        """m(rho): measured, or linear between the nearest measured keep ratios."""
        pts = sorted(self.step_time_s.items())
        rho = round(float(rho), 6)
        if rho in self.step_time_s:
            return self.step_time_s[rho]
        if rho <= pts[0][0]:  # below the smallest measured ratio: never cheaper than it was measured
            return pts[0][1]
        for (r0, t0), (r1, t1) in zip(pts, pts[1:]):
            if r0 <= rho <= r1:
                return t0 + (t1 - t0) * (rho - r0) / (r1 - r0)
        return pts[-1][1]

    def step_time(self, rho: float) -> float:
        """Wall-clock time of one step at `rho`, the loader included."""
        m = self.model_time(rho)
        return max(m, self.data_time_s) if self.overlap else m + self.data_time_s

    def data_bound(self, rho: float) -> bool:
        return self.overlap and self.data_time_s > _BOUND_MARGIN * self.model_time(rho)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["step_time_s"] = {f"{r:g}": t for r, t in sorted(self.step_time_s.items(), reverse=True)}
        return d


@dataclass
class Prediction:
    """What `predict` found: the run's expected wall-clock ratio to the full-token run, and why."""

    time_ratio: float  # with the loader
    model_time_ratio: float  # the model alone (data free)
    bound: str  # "model", "data" (at every keep ratio of the run), "mixed" (at some), or "serial" (loader adds)
    message: str
    loader_images_per_s: float
    model_images_per_s: dict[str, float] = field(default_factory=dict)  # per keep ratio of the run
    data_bound_keep_ratios: list[float] = field(default_factory=list)
    measurements: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ips(batch: int, seconds: float) -> str:
    return f"{batch / seconds:,.0f} img/s" if seconds > 0 else "unbounded"


_FIX = ("raise data.num_workers, use data.in_memory (decoded once, augmented on the device), "
        "or lighten the augmentation")


def predict(meas: Measurements, keep_ratios: Iterable[float]) -> Prediction:
    """The wall-clock ratio of a run whose steps take `keep_ratios` (one value per step, e.g. the
    schedule's `values(...)`) to the same run at keep ratio 1.0, and a one-paragraph cause."""
    counts = Counter(round(float(r), 6) for r in keep_ratios)
    if not counts:
        raise ConfigError("a prediction needs at least one step")
    n = sum(counts.values())
    full, full_model = meas.step_time(1.0), meas.model_time(1.0)
    ratio = math.fsum(c * meas.step_time(r) for r, c in counts.items()) / (n * full)
    model_ratio = math.fsum(c * meas.model_time(r) for r, c in counts.items()) / (n * full_model)
    b, d = meas.batch_size, meas.data_time_s
    loader = f"loader {_ips(b, d)}" + (f" ({meas.loader})" if meas.loader else "")
    bound_at = sorted((r for r in counts if meas.data_bound(r)), reverse=True)
    lowest = min(counts)
    at_low = f"the model at rho {lowest:g} takes {_ips(b, meas.model_time(lowest))}"
    expect = f"expected time ratio {ratio:.2f}"
    if not meas.overlap:
        bound = "serial"
        share = d / full
        msg = (f"{'data-bound: ' if d > meas.model_time(lowest) else ''}{loader}: its {1000 * d:.1f} ms per batch "
               f"adds to every step ({100 * share:.0f}% of a full-token step); {at_low}; {expect}, "
               f"model alone {model_ratio:.2f}")
        if model_ratio < 1 and ratio > model_ratio * 1.05:
            msg += f": the loader's share grows as the tokens shrink; {_FIX}"
    elif bound_at and len(bound_at) == len(counts):
        bound = "data"
        msg = (f"data-bound: {loader}; even at rho {max(counts):g} the model takes "
               f"{_ips(b, meas.model_time(max(counts)))}; {expect}, not {model_ratio:.2f}: {_FIX}")
    elif bound_at:
        bound = "mixed"
        msg = (f"{loader}; {at_low}: steps at rho <= {max(bound_at):g} wait for data; "
               f"{expect}, not {model_ratio:.2f}: {_FIX}")
    else:
        bound = "model"
        msg = (f"model-bound: {loader} feeds the model at every keep ratio of the run "
               f"({at_low}); {expect}")
    return Prediction(
        time_ratio=ratio, model_time_ratio=model_ratio, bound=bound, message=msg,
        loader_images_per_s=b / d if d > 0 else math.inf,
        model_images_per_s={f"{r:g}": b / meas.model_time(r) for r in sorted(counts, reverse=True)},
        data_bound_keep_ratios=bound_at, measurements=meas.to_dict(),
    )


@dataclass(frozen=True)
class MeasuredCost:
    """The cost model of `budget_cost: measured` (pss.budget): c(rho) = step(rho) / step(1.0), the loader
    included; linear between measured keep ratios, and below the smallest one no cheaper than it (a
    budget is never spent on savings nobody measured)."""

    meas: Measurements
    name: str = "measured"

    def __call__(self, keep_ratio: float) -> float:
        return self.meas.step_time(keep_ratio) / self.meas.step_time(1.0)

    def check(self, keep_ratios: set[float], gridded: bool) -> None:
        """Every keep ratio has a cost (conservative below the measured range)."""


def measurements_from_files(spec: Any, cfg: Any, root: str | None, batch_size: int,
                            placement: tuple[bool, str]) -> Measurements:
    """Measurements of `budget_cost: measured:SPEED.json,DATA.json` (`spec`, a pss.budget_spec.CostSpec):
    the model's step times from the speed report (refused if of another model or batch), the loader's time
    per batch from the data report (refused if of another data pipeline or worker count)."""
    from pss.budget import TableCost

    speed_path, data_path = spec.speed, spec.data
    TableCost.from_file(speed_path, cfg.model.name, cfg.model.img_size or cfg.data.img_size, cfg.model.kwargs)
    speed = json.loads(Path(speed_path).expanduser().read_text())
    if speed.get("batch_size") != batch_size:
        raise ConfigError(f"speed file {speed_path!r} was measured at batch {speed.get('batch_size')}, this run "
                          f"steps on {batch_size} images per process; re-run pss bench speed --batch-size {batch_size}")
    row = read_data_report(data_path, data_pipeline(cfg.data, batch_size, root), cfg.data.num_workers)
    # the values are checked by Measurements (a finite number of seconds each), the keys here
    return Measurements({r["keep_ratio"]: r.get("step_time_s") for r in speed["results"]}, row.get("mean_batch_s"),
                        batch_size, placement[0], source=f"{speed_path} + {data_path}", loader=placement[1])


def ratios_to_time(schedule: Any, steps_per_epoch: int, total_steps: int, whole_grid: bool = False) -> list[float]:
    """The keep ratios to time for a run of `schedule` (`measurement_ratios` of its keep ratios), or with
    `whole_grid` every value a budget solver may pick: the schedule's grid, or a spread of keep ratios."""
    if whole_grid:
        grid = schedule.grid or 0.2
        values = [round(k * grid, 6) for k in range(1, round(1 / grid) + 1)]
        return measurement_ratios(values, at_most=len(values) if schedule.grid else 5)
    return measurement_ratios(schedule.counts(steps_per_epoch, total_steps))


def measurement_ratios(values: Iterable[float], at_most: int = 5) -> list[float]:
    """Keep ratios to time: every distinct one of the run if there are few (a gridded schedule), else
    1.0, the smallest and evenly spaced ones between (the rest is interpolated)."""
    distinct = sorted({round(float(v), 6) for v in values} | {1.0}, reverse=True)
    if len(distinct) <= at_most:
        return distinct
    lo = distinct[-1]
    return sorted({round(1.0 - i * (1.0 - lo) / (at_most - 1), 4) for i in range(at_most)}, reverse=True)


# ---------------------------------------------------------------------------------------------
# the loader's supply


def time_loader(loader: Any, device: Any, *, warmup: int = 2, batches: int = 10) -> tuple[dict[str, Any], Any]:
    """Time `batches` batches of `loader` (after `warmup`, which pays worker start-up), each moved to
    `device` and synchronised, from a fresh iterator; the consumer does nothing else, so this is the
    loader's supply alone. Returns (the mean seconds per batch, images/s, and the median and p90
    (interpolated) wait per batch where at least MIN_QUANTILE_BATCHES were timed, else None; the last batch)."""
    from pss.runtime import to_device
    from pss.runtime import synchronize

    if len(loader) < warmup + batches:
        warmup = max(0, min(warmup, len(loader) - 1))
        batches = max(1, len(loader) - warmup)
    it = iter(loader)
    waits, images = [], 0
    t_start = None
    try:
        for i in range(warmup + batches):
            t0 = time.perf_counter()
            batch = to_device(next(it), device)
            synchronize(device)
            if i == warmup:
                t_start = t0
            if i >= warmup:
                waits.append(time.perf_counter() - t0)
                images += len(batch[0]) if isinstance(batch, (list, tuple)) else len(batch)
    finally:
        del it  # shuts the workers down
    total = time.perf_counter() - t_start
    enough = len(waits) >= MIN_QUANTILE_BATCHES  # a p90 of 2 batches is the faster one: no quantile at all
    stats = {"batches": len(waits), "warmup": warmup, "images": images, "seconds": total,
             "images_per_s": images / total, "mean_batch_s": total / len(waits),
             "median_wait_s": statistics.median(waits) if enough else None,
             "p90_wait_s": statistics.quantiles(waits, n=10, method="inclusive")[8] if enough else None}
    return stats, batch


def loader_placement(data_cfg: Any, device: Any) -> tuple[bool, str]:
    """(overlap, where): whether the loader works beside the model (max of the two) or adds to it (see the
    module docstring): worker processes, and on a CPU device enough cores for the workers besides the
    model's threads; `where` says which, for the message."""
    import torch

    if data_cfg.in_memory:
        return False, "in memory, in the training process"
    w = data_cfg.num_workers
    if w == 0:
        return False, "0 workers: decoded in the training process"
    if str(getattr(device, "type", device)).startswith("cuda"):
        return True, f"{w} workers"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = torch.get_num_threads()
    if cores >= threads + w:
        return True, f"{w} workers"
    return False, f"{w} workers sharing {cores} CPU core(s) with the model's {threads} thread(s)"


def data_pipeline(data_cfg: Any, batch_size: int, root: str | None) -> dict[str, Any]:
    """What makes one loader's supply comparable to another's: the data, image size, per-process batch,
    where batches are made and the augmentation (recorded by `pss bench data`, checked against a run)."""
    return {"root": root, "train_split": data_cfg.train_split, "img_size": data_cfg.img_size,
            "batch_size": batch_size, "in_memory": data_cfg.in_memory,
            "max_train_per_class": data_cfg.max_train_per_class,
            **{k: getattr(data_cfg, k) for k in ("auto_augment", "re_prob", "color_jitter", "interpolation", "scale",
                                                 "hflip", "crop_padding")}}


def read_data_report(path: str | Path, pipeline: dict[str, Any], num_workers: int) -> dict[str, Any]:
    """The row for `num_workers` of a `pss bench data --json` file; refused (one line) when the file is
    not such a report, measured another data pipeline, or has no row for that worker count."""
    path = Path(path).expanduser()
    hint = "write one with: pss bench data --config RECIPE --json FILE"
    if not path.is_file():
        raise ConfigError(f"data cost file {str(path)!r} not found; {hint}")
    try:
        report = json.loads(path.read_text())
        rows = {int(r["num_workers"]): r for r in report["results"]}
        recorded = report["pipeline"]
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"data cost file {str(path)!r} is not a pss bench data report ({e}); {hint}") from None
    recorded = {k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items()}
    mine = {k: tuple(v) if isinstance(v, list) else v for k, v in pipeline.items()}
    differ = sorted(k for k in set(recorded) | set(mine) if recorded.get(k) != mine.get(k))
    if differ:
        raise ConfigError(
            f"data cost file {str(path)!r} was measured on another data pipeline ("
            + ", ".join(f"{k}: {recorded.get(k)!r} there, {mine.get(k)!r} here" for k in differ)
            + "); measure this one: pss bench data --config RECIPE --json FILE")
    if num_workers not in rows and not pipeline.get("in_memory"):
        raise ConfigError(f"data cost file {str(path)!r} has no row for num_workers {num_workers} (it has "
                          f"{', '.join(map(str, sorted(rows)))}); re-run pss bench data --workers {num_workers}")
    return rows.get(num_workers) or next(iter(rows.values()))


def measurements_for_run(run: Any) -> Measurements | None:
    """`budget_cost: measured:SPEED.json,DATA.json` with a budget: the measurements the files hold, checked
    against the run's model, batch and data pipeline (`run`: a pss.train.Run, set up to its loaders); None
    otherwise."""
    cfg = run.cfg
    if cfg.budget is None or not cfg.budget_cost.from_files:
        return None
    return measurements_from_files(cfg.budget_cost, cfg, run.data_report.root, run.per_rank,
                                   loader_placement(cfg.data, run.device))


def predict_run(run: Any) -> Prediction | None:
    """Will PSS pay on this machine, for a pss.train.Run set up to its wrapped model: the model's step time at
    the keep ratios the run needs and the loader's supply (`run.measurements` where the budget has them,
    else measured here, when `preflight` asks for it), the run's predicted wall-clock ratio to the
    full-token run with its cause, logged once. Returns the prediction, or None."""
    cfg, spe = run.cfg, run.steps_per_epoch
    total = cfg.epochs * spe
    wanted = cfg.preflight is True or (cfg.preflight == "auto" and total >= PREFLIGHT_MIN_STEPS)
    if run.measurements is None and not wanted:
        return None
    if run.measurements is None:
        run.measurements = measure_run(run)
    pred = predict(run.measurements, cfg.schedule.values(spe, total))
    # a resolution schedule's smaller sides are not timed: the ratio is that of its keep ratios at full side
    caveat = " (steps timed at full side: the resolution schedule's smaller sides cost less)" if cfg.resolution else ""
    log.log(logging.WARNING if pred.bound in ("data", "mixed") else logging.INFO, "pre-flight: %s%s", pred.message,
            caveat)
    return pred


def probe(run: Any) -> Any:
    """A Trainer on the run's state, without logs or checkpoints: what the pre-flight times steps with."""
    from pss.engine import Trainer

    return Trainer(state=run.state, task=run.task, schedule=run.cfg.schedule, train_loader=run.train_loader,
                   val_loader=None, loop=run.loop_config(), amp=run.amp, logger=None, checkpointer=None,
                   dist_info=run.dist, device=run.device)


def measure_run(run: Any, whole_grid: bool = False) -> Measurements:
    """Measurements on the run's own model and loader (`probe`, timed by `time_steps`, which restores every
    state it changes): step times at the keep ratios the run needs (`whole_grid`: at every value a budget
    solver may pick, the grid or a spread of keep ratios) and the loader's time per batch."""
    import torch.distributed as dist

    cfg, spe = run.cfg, run.steps_per_epoch
    ratios = ratios_to_time(cfg.schedule, spe, cfg.epochs * spe, whole_grid)
    if cfg.compile_options() is not None:
        import torch._dynamo

        from pss.dynamo import raise_recompile_limit

        cfg_d = torch._dynamo.config
        raise_recompile_limit(getattr(cfg_d, "recompile_limit", getattr(cfg_d, "cache_size_limit", 8)) + len(ratios))
    times, data = time_steps(probe(run), ratios)
    if run.dist.enabled:  # every rank solves and predicts on rank 0's figures, so all agree
        shared = [(times, data)]
        dist.broadcast_object_list(shared, src=0)
        times, data = shared[0]
    overlap, where = loader_placement(cfg.data, run.device)
    return Measurements(times, data["mean_batch_s"], run.per_rank, overlap, loader=where)


def time_steps(trainer: Any, keep_ratios: list[float], *, warmup: int = 1, iters: int = 3, data_warmup: int = 2,
               data_batches: int = 8) -> tuple[dict[float, float], dict[str, Any]]:
    """The pre-flight's measurements on a pss.engine.Trainer: the loader's supply (its first batches, from a
    fresh iterator: the run's data order is untouched), then the median time of `iters` real training steps
    (forward, backward, clipping, optimizer, EMA; after `warmup`, which also compiles) at each keep ratio on
    one of those batches, the ratios taking turns. Every state a step changes (weights, optimizer,
    GradScaler, EMA, LR, step count, RNG streams, the keep ratio) is restored afterwards, so the run trains
    exactly as it would have without them. Returns ({rho: step seconds}, loader stats)."""
    from pss.rng import get_rng_state, set_rng_state
    from pss.runtime import synchronize, unwrap_model

    s, p = trainer.state, trainer.progress
    trainer.train_loader.set_epoch(p.epoch)
    data, batch = time_loader(trainer.train_loader, trainer.device, warmup=data_warmup, batches=data_batches)
    bare = unwrap_model(trainer.model)
    saved = {
        "model": {k: v.detach().clone() for k, v in bare.state_dict().items()},
        "optimizer": copy.deepcopy(s.optimizer.state_dict()),
        "scaler": copy.deepcopy(s.scaler.state_dict()),
        "ema": {k: v.detach().clone() for k, v in s.ema.module.state_dict().items()} if s.ema is not None else None,
        "rng": get_rng_state(), "step": p.step, "rho": trainer.keep_ratio,
    }
    ts: dict[float, list[float]] = {rho: [] for rho in keep_ratios}
    trainer.model.train()
    try:
        # Warm-up (and compilation) at each ratio, then the timed steps round-robin over the ratios,
        # so a machine that slows down or speeds up meanwhile shifts every ratio alike.
        for i in range(warmup + iters):
            for rho in keep_ratios:
                trainer.set_keep_ratio(rho)
                synchronize(trainer.device)
                t0 = time.perf_counter()
                trainer.forward_backward(batch)
                trainer.optimizer_step()
                synchronize(trainer.device)
                if i >= warmup:
                    ts[rho].append(time.perf_counter() - t0)
        times = {rho: statistics.median(t) for rho, t in ts.items()}
    finally:
        bare.load_state_dict(saved["model"])
        s.optimizer.load_state_dict(saved["optimizer"])
        s.scaler.load_state_dict(saved["scaler"])
        if s.ema is not None:
            s.ema.module.load_state_dict(saved["ema"])
        set_rng_state(saved["rng"])
        p.step = saved["step"]
        if s.lr_scheduler is not None:
            s.lr_scheduler.step_update(num_updates=p.step)
        s.optimizer.zero_grad(set_to_none=True)
        if saved["rho"] is not None:
            trainer.set_keep_ratio(saved["rho"])
    return times, data


def with_loader_named(error: ConfigError, meas: Measurements) -> ConfigError:
    """An unreachable `budget_cost: measured` budget's error, naming the loader when it is what holds the
    cost up (it runs in the training process, or the model outpaces it at the smallest keep ratio)."""
    if meas.overlap and not meas.data_bound(min(meas.step_time_s)):
        return error
    return ConfigError(f"{error}. budget_cost: measured includes the loader ({meas.loader}, "
                       f"{1000 * meas.data_time_s:.0f} ms per batch, the model "
                       f"{1000 * meas.model_time(min(meas.step_time_s)):.0f} ms at rho "
                       f"{min(meas.step_time_s):g}): raise data.num_workers or use data.in_memory")
