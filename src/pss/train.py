"""`pss train`: a resolved TrainConfig built into one `Run`, trained by the engine, written to its run folder.

    cfg, resume_from = pss.resolve.resolve_config("configs/demo.yaml", ["epochs=2"], output="runs/demo")
    summary = train(cfg, resume_from=resume_from)

`train` joins the process group, sets determinism and holds the run folder's lock; `Run.setup()` checks
every input and builds each piece once, in this order (every check before the first write and the
first step): device and precision -> the config's checks above its floor (`check_config`: names known
to timm, the task's) -> output folder (locked) -> checkpoint to resume -> batch per process -> data
check -> class count and image size from the data -> task -> model (+ --init weights) -> loaders ->
budget (the schedule solved, pss.budget.plan) -> optimisation state (restored on resume) -> DDP /
torch.compile -> pre-flight (pss.preflight; a `budget_cost: measured` budget is solved here, on its
measurements) -> run header (config.yaml, logs, trackers) -> engine.
`Run.fit()` trains and writes summary.json. What the run folder holds and what a resume restores:
docs/run-folder.md.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from pss.budget import TableCost, plan
from pss.checkpoint import ResumePoint, check_training_checkpoint, load_checkpoint, remove_stale_temp_files
from pss.config import TrainConfig, config_to_dict, save_config
from pss.dynamo import check_compile_options
from pss.engine import LoopConfig, Task, Trainer
from pss.equal_time import cost_vs_full
from pss.errors import ConfigError, PssError
from pss.models import attention_impl, check_model_name
from pss.models.convert import load_init_weights
from pss.optim import build_optimisation, check_optimizer, restore
from pss.outputs import hold_run_folder
from pss.preflight import measure_run, measurements_for_run, predict_run, with_loader_named
from pss.resolution import check_resolution, describe_sides
from pss.runfolder import RunDir
from pss.runwriter import Checkpointer, StepLogger
from pss.runtime import DistInfo, agree, init_distributed, resolve_amp, resolve_device, seed_everything
from pss.state import Progress
from pss.tasks import task_kind
from pss.tokens_for_epochs import apply_budget_epochs, describe_budget_epochs
from pss.tracking import TrackingWriter, build_trackers

log = logging.getLogger("pss.train")

__all__ = [
    "OUTPUT_FILES",
    "Run",
    "build_model_for",
    "check_config",
    "resolve_data_geometry",
    "train",
]

OUTPUT_FILES = RunDir.OUTPUTS  # what a run writes (the names are pss.runfolder.RunDir's)


def train(
    cfg: TrainConfig,
    *,
    resume_from: str | Path | ResumePoint | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    trackers: list[Any] | None = None,
) -> dict[str, Any]:
    """Train as `cfg` says; returns summary.json's content. `trackers` (pss.tracking.Tracker) get every log
    record besides those the recipe's `logging` turns on. Every check on the input (config, data, model, init
    weights, output folder) runs before the first step; nothing is overwritten unless `overwrite` or `resume_from`
    (a checkpoint path, or the ResumePoint `pss.resolve.resolve_config` returns: its checkpoint is read once)."""
    dist_info = init_distributed(cfg.device)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    if cfg.deterministic:
        # Multi-threaded CPU kernels (and many CUDA ones) reduce in a varying order, so two runs
        # differ in the last bits; these settings pick order-stable kernels instead.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    try:
        with contextlib.ExitStack() as held:  # the run folder's lock, released on any exit
            run = Run(cfg, dist_info=dist_info, resume_from=resume_from, overwrite=overwrite, quiet=quiet,
                      trackers=trackers, held=held)
            return run.setup().fit()
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        if dist_info.enabled and dist.is_initialized():
            dist.destroy_process_group()


class Run:
    """One training run: the resolved config and every piece built from it, once.

    `setup()` checks the input and builds the pieces (see the module docstring for the order); `fit()`
    trains and returns the summary. Attributes after `setup()`: `cfg` (with the data's geometry and a
    budget's solved schedule), `folder` (a RunDir), `device`, `amp`, `task`, `model` (bare), `state`
    (pss.state.TrainState), `train_loader`, `val_loader`, `steps_per_epoch`, `budget` (pss.budget.BudgetPlan
    or None), `cost` (its cost model), `measurements` (pss.preflight.Measurements, or None where nothing was
    timed), `prediction` (the pre-flight's, or None), `config` (the resolved config as written to config.yaml
    and every checkpoint), `trainer` (pss.engine.Trainer).
    """

    def __init__(self, cfg: TrainConfig, *, dist_info: DistInfo = DistInfo(),
                 resume_from: str | Path | ResumePoint | None = None, overwrite: bool = False, quiet: bool = False,
                 trackers: list[Any] | None = None, held: contextlib.ExitStack | None = None) -> None:
        self.recipe = cfg  # as given; `cfg` gains the data's geometry and a budget's solved schedule
        self.cfg = cfg
        self.dist = dist_info
        self.resume_point = resume_from if isinstance(resume_from, ResumePoint) else None
        self.resume_from = Path(resume_from) if resume_from is not None else None
        self.overwrite, self.quiet = overwrite, quiet
        self.extra_trackers = list(trackers or [])
        self.held = held if held is not None else contextlib.ExitStack()
        self.budget: Any = None
        self.cost: Any = None
        self.measurements: Any = None
        self.prediction: Any = None

    # -- setup: every check before the first write and the first step ------------------------------

    def setup(self) -> Run:
        from pss.data import check_data

        if not self.dist.is_main:
            logging.getLogger("pss").setLevel(logging.WARNING)  # rank 0 alone reports
        self.device = resolve_device(self.cfg.device, self.dist)
        self.amp = resolve_amp(self.cfg.amp, self.device)
        cfg = self.cfg = apply_budget_epochs(self.cfg)  # a config built in Python, not through resolve_config
        check_config(cfg)
        self.folder = self._prepare_output()
        ckpt = self._checkpoint_to_resume()
        self.per_rank = batch_per_process(cfg, self.dist.world_size)
        # paths, class folders, the batch against the images, unreadable images: quick, before decoding
        self.data_report = check_data(cfg.data, self.per_rank, self.dist.world_size)
        log.info("data: %s", self.data_report.describe())
        self.class_names = list(self.data_report.classes)
        self.cfg = resolve_data_geometry(cfg, len(self.class_names))
        self.task: Task = task_kind(self.cfg.task).build(self.cfg, self.class_names)
        self.model = self._build_model(init=self.cfg.init if ckpt is None else None)
        self.geometry = check_resolution(self.cfg.resolution, self.model, self.task)  # before any data is decoded
        self._build_loaders()
        # `budget_cost: measured` times the run's own steps, so it is solved once the state is built; every
        # other budget now, so that the optimisation state and torch.compile see the solved schedule
        timed_here = self.cfg.budget is not None and self.cfg.budget_cost.timed_in_run
        self.measurements = measurements_for_run(self)  # measured:SPEED.json,DATA.json: read from the reports
        if not timed_here:
            self._solve_budget()
        self.state = build_optimisation(self.cfg, self.model, self.amp, self.steps_per_epoch)
        resume_rng = self._restore(ckpt) if ckpt is not None else None
        del ckpt
        seed_everything(self.cfg.seed + self.dist.rank + self.state.progress.step)  # per-rank streams
        self.state.model = self._wrap(self.model)
        if timed_here:
            self.measurements = measure_run(self, whole_grid=True)  # every state restored afterwards
            self._solve_budget()
        self.prediction = predict_run(self)
        self.config = config_to_dict(self.cfg)  # the resolved recipe: run header, trackers, every checkpoint
        self._open_run_folder()
        self._log_header()
        self.trainer = self._build_trainer(resume_rng)
        return self

    def _checkpoint_to_resume(self) -> dict[str, Any] | None:
        """The checkpoint to resume from, read once: the one `resolve_config` read (its ResumePoint), else read
        here from the path given."""
        if self.resume_from is None:
            return None
        ckpt = self.resume_point.take() if self.resume_point is not None else None
        if ckpt is None:
            ckpt = check_training_checkpoint(load_checkpoint(self.resume_from), self.resume_from, resumable=True)
        return ckpt

    def _prepare_output(self) -> RunDir:
        """The output folder: writable, locked for the run's life (rank 0 holds it; a second run into it
        stops here, before touching anything), and not another run's unless resuming / overwriting."""
        folder = RunDir(self.cfg.output_dir or "runs/train")
        error = None
        if self.dist.is_main:
            try:
                self.held.enter_context(hold_run_folder(folder.path))
                folder.check_fresh(self.resume_from is not None, self.overwrite)
            except PssError as e:
                error = e
        agree(self.dist, error)
        return folder

    def _build_model(self, init: str | None) -> nn.Module:
        """The recipe's model, with its fine-tuning weights (shape mismatches fail here, before any data is
        decoded), adapted by the task (SimMIM wraps the initialised classifier's encoder), on the device."""
        seed_everything(self.cfg.seed)  # the same initial weights on every rank
        model = build_model_for(self.cfg, self.cfg.model.num_classes)
        if init:
            load_init_weights(model, init)
        return self.task.prepare_model(model).to(self.device)

    def _build_loaders(self) -> None:
        """Train and validation loaders (each rank reads its shard; the order depends on (seed, epoch))."""
        from pss.data import build_datasets, build_loader

        cfg, dist_info = self.cfg, self.dist
        on_device = self.device if cfg.data.in_memory else None
        train_ds, val_ds, _ = build_datasets(cfg.data, on_device, report=self.data_report)
        self.train_loader = build_loader(train_ds, self.per_rank, True, cfg.data, distributed=dist_info.enabled,
                                         seed=cfg.seed)
        eval_bs = cfg.eval.batch_size or self.per_rank // cfg.accum_steps
        self.val_loader = build_loader(val_ds, eval_bs, False, cfg.data, distributed=dist_info.enabled, seed=cfg.seed)
        self.steps_per_epoch = len(self.train_loader)
        if self.steps_per_epoch < 1:
            raise ConfigError(f"no full batch of {self.per_rank} images per process: lower batch_size or use more data")
        cfg.schedule.check_run(self.steps_per_epoch, cfg.epochs * self.steps_per_epoch)

    def _solve_budget(self) -> None:
        """With `budget`: `cfg.schedule` (and a resolution schedule, by the lever) solved to that cost, once
        (pss.budget.plan, the entry `pss schedule --budget` uses too), `budget` the plan, `cost` its cost
        model; `budget_cost: measured` on `measurements` (an unreachable budget then names the loader)."""
        cfg = self.cfg
        try:
            solved = plan(cfg, self.model, self.steps_per_epoch, self.measurements)
        except ConfigError as e:
            if not cfg.budget_cost.timed_in_run:
                raise
            raise with_loader_named(e, self.measurements) from None
        if solved is None:
            return
        self.budget, self.cost = solved, solved.cost
        log.info("%s", solved.describe())
        if solved.unspent():
            log.warning("%s", solved.unspent())
        self.cfg = dataclasses.replace(cfg, schedule=solved.schedule, resolution=solved.resolution or cfg.resolution)

    def _restore(self, ckpt: dict[str, Any]) -> list[dict[str, Any]] | None:
        rng = restore(ckpt, self.state, self.cfg, self.steps_per_epoch, self.dist)
        log.info("resuming %s at step %d (epoch %d)", self.resume_from, self.state.progress.step,
                 self.state.progress.step // self.steps_per_epoch + 1)  # epochs count from 1 for people, from 0 in the files
        return rng

    def _wrap(self, model: nn.Module) -> nn.Module:
        """DDP, then torch.compile (PyTorch's recommended order: the compiler then splits graphs at DDP's
        bucket boundaries). set_keep_ratio and checkpoints see through both."""
        cfg = self.cfg
        if self.dist.enabled:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if cfg.compile_options() is not None:
            # The keep ratio is a Python attribute that dynamo guards on: each distinct rho (few, on
            # the schedule's grid) is one more graph, and evaluation one more. Allow exactly those.
            from pss.dynamo import compile_friendly

            compile_friendly(cfg.schedule, steps_per_epoch=self.steps_per_epoch, epochs=cfg.epochs,
                             eval_keep_ratios=(cfg.eval.keep_ratio,), resolution=cfg.resolution, geometry=self.geometry)
            model = torch.compile(model, **cfg.compile_options())
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        return model

    def _open_run_folder(self) -> None:
        """The run header: the resolved config written (a budget's solved value marked beside the recipe's),
        an overwritten run's files removed, logs continued after the checkpoint's step, the trackers the
        recipe's `logging` section asks for."""
        cfg, folder, progress = self.cfg, self.folder, self.state.progress
        resuming = self.resume_from is not None
        trackers: list[Any] = []
        if self.dist.is_main:
            folder.path.mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files(folder.path)  # left by a process killed while saving
            if not resuming and self.overwrite:
                folder.clear()
            save_config(cfg, folder / RunDir.CONFIG, notes=self._budget_notes())
            trackers = build_trackers(
                cfg.logging, folder.path, config=self.config, resume_step=progress.step if resuming else None,
                epochs=cfg.epochs, steps_per_epoch=self.steps_per_epoch, batch_size=cfg.batch_size,
                quiet=self.quiet, run_name=folder.path.name,
            ) + self.extra_trackers
        self.writer = TrackingWriter(folder.path, enabled=self.dist.is_main, trackers=trackers)
        if self.dist.is_main and resuming:
            self.writer.truncate(progress.step)

    def _budget_notes(self) -> dict[str, str]:
        """config.yaml comments: the solved parameter next to the recipe's value, and the budget's cost."""
        if self.budget is None:
            return {}
        b = self.budget
        notes = {"budget": f"predicted cost {b.predicted_cost:.4f} of the full-token run ({b.cost_model}; lever {b.lever})"}
        if b.lever in ("drop", "both"):
            notes[f"schedule.{b.parameter}"] = f"solved for budget {b.budget:g}; the recipe's {b.parameter}: {b.recipe_value:g}"
        if b.lever in ("resize", "both"):
            notes["resolution.start"] = f"solved for budget {b.budget:g}; the recipe's start: {b.recipe_start:g}"
        return notes

    def _log_header(self) -> None:
        cfg = self.cfg
        log.info(
            "training %s (%.1fM params) on %s x%d, %s, %d epochs x %d steps, batch %d, lr %.3g, schedule %s -> %s",
            cfg.model.name, num_params(self.model) / 1e6, self.device, self.dist.world_size, self.amp.name, cfg.epochs,
            self.steps_per_epoch, cfg.batch_size, cfg.peak_lr(), cfg.schedule.name, self.folder.path,
        )
        if self.budget is not None:
            log.info("schedule (solved for the budget): %s", cfg.schedule.to_dict())
        if cfg.resolution is not None:
            log.info("resolution: %s", describe_sides(cfg.resolution, cfg.epochs, *self.geometry))
        if cfg.budget_reference is not None:
            log.info("%s", describe_budget_epochs(cfg))
        log.info("attention: %s", attention_impl(self.model, self.device))  # flex | sdpa, by model attn_impl

    def loop_config(self) -> LoopConfig:
        """The engine's view of the config."""
        cfg = self.cfg
        return LoopConfig(
            epochs=cfg.epochs, steps_per_epoch=self.steps_per_epoch, accum_steps=cfg.accum_steps,
            clip_grad=cfg.optim.clip_grad, log_interval=cfg.log_interval,
            checkpoint_interval_epochs=cfg.checkpoint_interval_epochs,
            checkpoint_interval_steps=cfg.checkpoint_interval_steps, eval_interval=cfg.eval.interval,
            eval_keep_ratio=cfg.eval.keep_ratio, select=cfg.select, resolution=cfg.resolution,
            **({"img_size": self.geometry[0], "patch_size": self.geometry[1]} if self.geometry else {}),
        )

    def _build_trainer(self, resume_rng: list[dict[str, Any]] | None) -> Trainer:
        cfg = self.cfg
        loop = self.loop_config()
        checkpointer = Checkpointer(self.folder.path, config=self.config, class_names=self.class_names,
                                    dist_info=self.dist, resume_rng=resume_rng, resumed_from=self.resume_from)
        logger = StepLogger(self.writer, dist_info=self.dist, global_batch_size=cfg.batch_size, quiet=self.quiet,
                            last_good=checkpointer.last_good)
        return Trainer(
            state=self.state, task=self.task, schedule=cfg.schedule, train_loader=self.train_loader,
            val_loader=self.val_loader, loop=loop, amp=self.amp, logger=logger, checkpointer=checkpointer,
            dist_info=self.dist, device=self.device,
        )

    # -- fit ------------------------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        """Train (or continue) to the last step; write and return summary.json's content."""
        try:
            p = self.trainer.fit()
        finally:
            self.writer.close()
        summary = self.summary(p)
        # task-specific outputs (pre-training: the encoder for fine-tuning)
        summary.update(self.task.on_train_end(
            self.model, folder=self.folder.path, val_loader=self.val_loader, amp=self.amp, dist_info=self.dist,
            step=p.step, config=self.config,
        ) or {})
        self.writer.write_json(RunDir.SUMMARY, summary)
        metric = self.task.metric
        log.info(
            "done: %s %.2f (best %.2f at epoch %s), %.1f s training, %.0f img/s, mean keep ratio %.3f -> %s",
            metric, summary.get(f"final_{metric}") or math.nan, summary.get(f"best_{metric}") or math.nan,
            human_epoch(summary.get("best_epoch")), p.train_time_s, summary["images_per_s"] or 0,
            summary["mean_keep_ratio"] or 0,
            self.folder.path,
        )
        return summary

    def summary(self, p: Progress) -> dict[str, Any]:
        """summary.json: timings, metrics, the run's settings and where it ran (see docs/run-folder.md)."""
        from pss.runinfo import run_info

        cfg, steps, train_s = self.cfg, p.step, p.train_time_s
        return {
            "train_time_s": train_s,
            "wall_time_s": p.wall_time_s,
            "epochs": steps // self.steps_per_epoch,
            "steps": steps,
            f"best_{self.task.metric}": p.best_metric,
            "best_epoch": p.best_epoch,
            **{f"final_{k}": v for k, v in p.last_eval.items()},
            "mean_keep_ratio": p.keep_ratio_sum / steps if steps else None,
            "images_per_s": steps * cfg.batch_size / train_s if train_s > 0 else None,
            "data_wait_fraction": p.data_time_s / train_s if train_s > 0 else None,
            **run_info(self.device),
            "world_size": self.dist.world_size,
            "amp": self.amp.name,
            "model": cfg.model.name,
            "num_params": num_params(self.model),
            "batch_size": cfg.batch_size,
            "schedule": cfg.schedule.to_dict(),
            "select": cfg.select,
            "resumed": p.resumed,
            "skipped_images": len(self.data_report.corrupt),  # unreadable files left out (on_corrupt: skip)
            "budget": self.budget_summary(p) if self.budget is not None and self.dist.is_main else None,
            "preflight": self.preflight_summary(p) if self.prediction and self.dist.is_main else None,
            "equal_time_of": cfg.equal_time_of,
        }

    def budget_summary(self, p: Progress) -> dict[str, Any]:
        """The plan, and what the run really cost, from the loop's own counters: the cost model over the
        steps it ran, and (on CPU, where step times are synchronous) its step time relative to its own
        full-token steps."""
        plan = self.budget
        out = plan.to_dict()
        out["realised_cost"] = p.realised_cost(self.cost)
        out["realised_time_ratio"] = p.realised_time_ratio() if self.device.type == "cpu" else None
        reference = self.cfg.budget_reference
        cost = cost_vs_full(self.cfg, {"budget": out})  # the user's budget; the cost against the recipe's full run
        out["cost_vs_full"] = {"budget": cost.budget, "predicted": cost.predicted, "realised": cost.realised}
        if reference is not None and out["realised_cost"] is not None:  # tokens for epochs: against the recipe's run
            out.update(reference=reference, realised_cost_vs_reference=cost.realised)
        spent = (f"{cost.epochs_factor * reference['epochs']:g} epochs instead of {reference['epochs']} at "
                 f"{plan.budget:g} of each, " if reference is not None else "")
        log.info(
            "budget %g: realised cost %.4f of the full run (%spredicted %.4f; %s)%s", cost.budget,
            cost.realised if cost.realised is not None else math.nan, spent, cost.predicted, plan.cost_model,
            "" if out["realised_time_ratio"] is None
            else f"; step time vs this run's full-token steps {out['realised_time_ratio']:.3f}",
        )
        return out

    def preflight_summary(self, p: Progress) -> dict[str, Any]:
        """The pre-flight's prediction next to the realised ratio (on CPU: the run's step times, the loader's
        waits included, relative to its own full-token steps, from the loop's counters)."""
        pred = self.prediction
        out = pred.to_dict()
        out["realised_time_ratio"] = p.realised_time_ratio() if self.device.type == "cpu" else None
        if out["realised_time_ratio"] is not None:
            log.info("pre-flight: predicted time ratio %.3f, realised %.3f", pred.time_ratio, out["realised_time_ratio"])
        return out


# ---------------------------------------------------------------------------------------------
# pieces other commands share (pss demo, pss pretrain)


def build_model_for(cfg: TrainConfig, num_classes: int) -> nn.Module:
    from pss.control import set_trained_select
    from pss.models import build_model

    m = cfg.model
    model = build_model(
        m.name, num_classes=num_classes, img_size=m.img_size,
        drop_path_rate=m.drop_path_rate, drop_rate=m.drop_rate, **m.kwargs,
    )
    set_trained_select(model, cfg.trained_select)  # the deterministic rule eval.keep_ratio < 1 uses
    return model


def check_config(cfg: TrainConfig) -> None:
    """The config's checks that belong to the layers above it (pss.settings holds those that need nothing),
    run before any data is read: names the model registry and timm's optimizers must know, torch.compile's
    options, the budget's speed report (a file; checked with or without a budget: a bad setting is refused,
    never silently unused), and the task's own (pss.tasks). The schedule's fit to the run length is checked
    once the data gives steps per epoch."""
    check_model_name(cfg.model.name)
    check_optimizer(cfg.optim.opt)
    check_compile_options(cfg.compile_options())
    if cfg.budget_cost.speed is not None:  # measured:SPEED.json,DATA.json: the data file once the data is read
        TableCost.from_file(cfg.budget_cost.speed, cfg.model.name, cfg.model.img_size or cfg.data.img_size,
                            cfg.model.kwargs)
    task_kind(cfg.task).check(cfg)


def resolve_data_geometry(cfg: TrainConfig, num_classes: int) -> TrainConfig:
    """The config with the model's class count and image size taken from the data (where the recipe
    leaves them null); a recipe that sets them differently is refused."""
    m = cfg.model
    if m.num_classes is not None and m.num_classes != num_classes:
        raise ConfigError(
            f"model.num_classes is {m.num_classes} but the data has {num_classes} classes; "
            "set model.num_classes: null to take it from the data"
        )
    if m.img_size is not None and m.img_size != cfg.data.img_size:
        raise ConfigError(
            f"model.img_size {m.img_size} differs from data.img_size {cfg.data.img_size}: "
            "the model sees what the data gives; set one, and model.img_size: null"
        )
    return dataclasses.replace(cfg, model=dataclasses.replace(m, num_classes=num_classes, img_size=cfg.data.img_size))


def batch_per_process(cfg: TrainConfig, world: int) -> int:
    """Per-process batch per optimizer step (split further into `accum_steps` micro-batches)."""
    if cfg.batch_size % world:
        raise ConfigError(
            f"batch_size {cfg.batch_size} (global) is not divisible by the {world} processes; "
            f"use a multiple of {world}"
        )
    per_rank = cfg.batch_size // world
    if per_rank % cfg.accum_steps:
        raise ConfigError(
            f"the per-process batch ({per_rank} = batch_size / {world} processes) is not divisible by "
            f"accum_steps {cfg.accum_steps}"
        )
    return per_rank


def human_epoch(epoch: int | None) -> int | str:
    """An epoch as people count it (from 1); the files keep their 0-based ``epoch`` fields."""
    return "-" if epoch is None else epoch + 1


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
