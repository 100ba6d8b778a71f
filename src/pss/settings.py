"""The recipe's sections as small typed dataclasses, each validated on construction (`ConfigError`).

A recipe (configs/*.yaml) mirrors `TrainConfig`: top-level run settings plus one section per
dataclass (`model`, `data`, `optim`, `lr_sched`, `mixup`, `ema`, `eval`, `logging`) and the keep-ratio
`schedule` (any mapping `pss.schedule.from_dict` accepts); a pre-training recipe (`task: simmim`) is a
`PretrainConfig`, with one more section, `mim`. `TASK_CONFIGS` names the config class of each `task:`.
Loading, `--set` overrides and saving are `pss.config`'s (which re-exports every class here).

This is the ground floor: the checks here need nothing but the recipe's own values. Checks that need
timm, the model registry, the optimizer or files run when a run is set up (`pss.train.check_config`,
which asks the layers that own them), checks that need the data in `pss.data.check_data`. Loading a
config imports none of those layers, nor the data pipeline.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any

from pss.bounds import MAX_EPOCHS, check_count, check_img_size
from pss.budget_spec import CostSpec, check_settings as check_budget_settings
from pss.errors import ConfigError
from pss.runtime import PRECISIONS
from pss.resolution import ResolutionSchedule
from pss.schedule import FixedSchedule, Schedule, from_dict as schedule_from_dict
from pss.select import DEFAULT_SELECT, SELECT_RULES

__all__ = [
    "DataConfig",
    "EmaConfig",
    "EvalConfig",
    "LRSchedConfig",
    "LoggingConfig",
    "MimConfig",
    "MixupConfig",
    "ModelConfig",
    "OptimConfig",
    "PretrainConfig",
    "TASK_CONFIGS",
    "TrainConfig",
    "config_class",
    "tasks_of",
]

DEVICES = ("auto", "cpu", "cuda")
COMPILE_KEYS = frozenset({"mode", "dynamic", "fullgraph", "backend", "options"})  # torch.compile arguments a recipe may set
LR_SCHEDULERS = ("cosine", "tanh", "step", "multistep", "poly", "constant", "none")


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _positive(name: str, v: float, allow_zero: bool = False) -> None:
    ok = v >= 0 if allow_zero else v > 0
    _check(math.isfinite(v) and ok, f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {v!r}")


def _integers_at_least(section: str, obj: Any, bounds: list[tuple[str, int]]) -> None:
    """Each named field of `obj` an integer (not a bool) >= its bound."""
    for name, low in bounds:
        value = getattr(obj, name)
        _check(isinstance(value, int) and not isinstance(value, bool) and value >= low,
               f"{section}.{name} must be an integer >= {low}, got {value!r}")


def _fraction(name: str, v: float, hi_open: bool = False) -> None:
    ok = 0.0 <= v < 1.0 if hi_open else 0.0 <= v <= 1.0
    _check(ok, f"{name} must be in [0, 1{')' if hi_open else ']'}, got {v!r}")


@dataclass
class ModelConfig:
    """Which ViT to train. `name` is ours (`pss_vit_*`) or any timm ViT name (attached automatically; the
    model registry checks it when a run is set up: pss.models.check_model_name)."""

    name: str = "pss_vit_tiny_patch4_32"
    num_classes: int | None = None  # None: the number of class folders in the training data
    img_size: int | None = None  # None: data.img_size
    drop_path_rate: float = 0.0
    drop_rate: float = 0.0
    kwargs: dict[str, Any] = field(default_factory=dict)  # more timm kwargs: depth, embed_dim, pos_embed, ...

    def __post_init__(self) -> None:
        _check(bool(self.name), "model.name must name a model, e.g. pss_vit_small_patch16_224")
        if self.num_classes is not None:
            _check(self.num_classes >= 1, f"model.num_classes must be >= 1 (or null: from the data), got {self.num_classes}")
        if self.img_size is not None:
            _check(self.img_size >= 1, f"model.img_size must be >= 1 (or null: data.img_size), got {self.img_size}")
            check_img_size("model.img_size", self.img_size)
        _fraction("model.drop_path_rate", self.drop_path_rate, hi_open=True)
        _fraction("model.drop_rate", self.drop_rate, hi_open=True)
        for key in ("num_classes", "img_size", "drop_path_rate", "drop_rate"):
            _check(key not in self.kwargs, f"set model.{key} directly, not inside model.kwargs")


# The built-in glyph set (pss.data.builtin) is drawn at this size; a larger img_size is a
# nearest-neighbour upscale, a smaller one is refused.
GLYPH_IMG_SIZE = 32
# timm's IMAGENET_DEFAULT_MEAN / _STD (timm.data.constants), the default normalisation; written out so
# that loading a config imports no timm (a test holds them equal to timm's).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos", "random")
_AUTO_AUGMENT_PREFIXES = ("rand", "augmix", "original", "v0", "3a")


@dataclass
class DataConfig:
    """The ``data:`` section of a recipe (read by `pss.data`). Validated on construction (raises `ConfigError`)."""

    path: str | None = None  # folder, .tar.gz archive, hf:NAME[:CONFIG] (pss.data.sources), or None for the built-in glyph set
    train_split: str = "train"
    val_split: str = "val"  # the CIFAR-10 archive uses "test"
    img_size: int = 32
    in_memory: bool = False  # decode once into uint8 tensors on `device`; augment batch-wise there
    on_corrupt: str = "skip"  # "skip": count, log and leave out unreadable images; "fail": raise
    num_workers: int = 2
    cache_dir: str | None = None  # where archives are extracted; None -> $PSS_DATA_CACHE or ~/.cache/pss-data
    hf_image_column: str | None = None  # Hugging Face datasets: None -> the Image feature, the ClassLabel feature
    hf_label_column: str | None = None
    # Corrupt-image scan in check_data: every file when the dataset has at most scan_max_files files,
    # otherwise a seeded random sample of scan_sample_size (the rest is caught at load time).
    scan_images: bool = True
    scan_max_files: int = 200_000
    scan_sample_size: int = 10_000
    # Class-balanced subset of a folder dataset (the first N files of each class, in sorted order):
    # quick experiments and the reduced CPU benchmarks. None = every image.
    max_train_per_class: int | None = None
    max_val_per_class: int | None = None
    # Built-in glyph set (path: null).
    builtin_num_train: int = 2000
    builtin_num_val: int = 500
    builtin_num_classes: int = 10
    seed: int = 0
    # Augmentation (DeiT recipe names; passed to timm.data.create_transform).
    auto_augment: str | None = None  # e.g. "rand-m9-mstd0.5-inc1"; not with in_memory
    re_prob: float = 0.0  # random erasing probability
    re_mode: str = "pixel"
    re_count: int = 1
    color_jitter: float | None = None  # None/0 -> off (timm turns it off anyway when auto_augment is set)
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    hflip: float = 0.5
    crop_padding: int = 4  # small images: zero padding before the random crop
    scale: tuple[float, float] | None = None  # large images: RandomResizedCrop area range (timm default 0.08-1)
    crop_pct: float | None = None  # large images, eval: resize to img_size / crop_pct then centre crop

    def __post_init__(self) -> None:
        if self.path is not None:
            self.path = os.fspath(self.path)
            if not self.path.strip():
                self.path = None
        for name in ("cache_dir", "hf_image_column", "hf_label_column", "auto_augment"):  # empty: null, as path
            if isinstance(getattr(self, name), str) and not getattr(self, name).strip():
                setattr(self, name, None)
        self.mean = tuple(float(m) for m in self.mean)  # YAML gives lists
        self.std = tuple(float(s) for s in self.std)
        if self.scale is not None:
            self.scale = tuple(float(s) for s in self.scale)
        _check(self.on_corrupt in ("skip", "fail"), f"data.on_corrupt must be 'skip' or 'fail', got {self.on_corrupt!r}")
        for name in ("train_split", "val_split"):
            value = getattr(self, name)
            _check(isinstance(value, str) and bool(value) and "/" not in value and value not in (".", ".."),
                   f"data.{name} must be a folder name such as 'train', got {value!r}")
        # one rule for every source (folders, archives, Hugging Face): never evaluate on the training images
        _check(self.train_split != self.val_split,
               f"data.train_split and data.val_split are both {self.val_split!r}: evaluating on the training images "
               "measures memory, not accuracy; set data.val_split to the evaluation split (e.g. val or test)")
        _integers_at_least("data", self, [("img_size", 1), ("num_workers", 0), ("scan_max_files", 1),
                                          ("scan_sample_size", 1), ("builtin_num_train", 1), ("builtin_num_val", 1),
                                          ("seed", 0)])
        for name in ("max_train_per_class", "max_val_per_class"):
            value = getattr(self, name)
            _check(value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1),
                   f"data.{name} must be null (all images) or an integer >= 1, got {value!r}")
        check_img_size("data.img_size", self.img_size)
        _check(2 <= self.builtin_num_classes <= 100,
               f"data.builtin_num_classes must be in [2, 100], got {self.builtin_num_classes}")
        if self.path is None:
            _check(self.builtin_num_train >= self.builtin_num_classes and self.builtin_num_val >= self.builtin_num_classes,
                   "data.builtin_num_train and builtin_num_val must be >= builtin_num_classes "
                   "(the built-in set is class-balanced)")
            _check(self.img_size >= GLYPH_IMG_SIZE,
                   f"the built-in set is drawn at {GLYPH_IMG_SIZE} px and shrinking it would blur "
                   f"the glyphs: set data.img_size >= {GLYPH_IMG_SIZE} (got {self.img_size})")
        self._check_augmentation()

    def _check_augmentation(self) -> None:
        """The augmentation and normalisation keys (the DeiT recipe's names; read by `pss.data.datasets`
        for folders, archives and Hugging Face sets, by `pss.data.augment` in memory)."""
        _integers_at_least("data", self, [("re_count", 1), ("crop_padding", 0)])
        for name in ("re_prob", "hflip"):
            _check(0.0 <= float(getattr(self, name)) <= 1.0, f"data.{name} must be in [0, 1], got {getattr(self, name)!r}")
        _check(self.re_mode in ("const", "rand", "pixel"),
               f"data.re_mode must be 'const', 'rand' or 'pixel', got {self.re_mode!r}")
        _check(self.interpolation in _INTERPOLATIONS,
               f"data.interpolation must be one of {_INTERPOLATIONS}, got {self.interpolation!r}")
        _check(not (len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0),
               f"data.mean and data.std need 3 values (RGB), std > 0; got {self.mean}, {self.std}")
        _check(self.color_jitter is None or not float(self.color_jitter) < 0,
               f"data.color_jitter must be >= 0 or null, got {self.color_jitter!r}")
        _check(self.scale is None or (len(self.scale) == 2 and 0 < self.scale[0] <= self.scale[1] <= 1),
               f"data.scale must be [min, max] with 0 < min <= max <= 1, got {self.scale}")
        _check(self.crop_pct is None or 0 < self.crop_pct <= 1, f"data.crop_pct must be in (0, 1], got {self.crop_pct}")
        if self.auto_augment:
            _check(self.auto_augment.startswith(_AUTO_AUGMENT_PREFIXES),
                   f"data.auto_augment {self.auto_augment!r} is not a timm policy: use e.g. "
                   "'rand-m9-mstd0.5-inc1' (RandAugment), 'augmix-m5-w4-d2' or 'original'")
            # timm parses the policy itself in the data layer's check (pss.data.check_data), before any work
        # RandAugment / ColorJitter are per-image PIL ops: they would put the CPU back on the hot path.
        _check(not (self.in_memory and (self.auto_augment or self.color_jitter)),
               "data.in_memory augments on the device (random crop, flip, random erasing) and "
               "cannot apply auto_augment or color_jitter: set data.in_memory: false to keep "
               "them, or drop them")

    def to_dict(self) -> dict[str, Any]:
        """Plain types (lists, not tuples) for YAML/JSON."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


@dataclass
class OptimConfig:
    """Optimizer (built by `timm.optim.create_optimizer_v2`).

    The peak learning rate is `lr` if set (it wins over `base_lr`), else
    `base_lr * batch_size / base_batch_size` (the DeiT / SimMIM linear scaling rule with the
    *global* batch size).
    """

    opt: str = "adamw"
    lr: float | None = None
    base_lr: float | None = 5e-4
    base_batch_size: int = 512
    weight_decay: float = 0.05
    momentum: float = 0.9
    betas: list[float] | None = None  # None: the optimizer's default
    eps: float | None = None
    layer_decay: float | None = None  # layer-wise LR decay (fine-tuning), e.g. 0.65
    clip_grad: float | None = None  # max global gradient norm; None: no clipping

    def __post_init__(self) -> None:
        # the name is checked against timm's optimizers when a run is set up (pss.optim.check_optimizer)
        _check(bool(self.opt), "optim.opt must name an optimizer, e.g. adamw")
        _check(
            self.lr is not None or self.base_lr is not None,
            "set optim.lr (absolute) or optim.base_lr (scaled by batch_size / base_batch_size)",
        )
        if self.lr is not None:
            _positive("optim.lr", self.lr)
        if self.base_lr is not None:
            _positive("optim.base_lr", self.base_lr)
        _check(self.base_batch_size >= 1, f"optim.base_batch_size must be >= 1, got {self.base_batch_size}")
        _positive("optim.weight_decay", self.weight_decay, allow_zero=True)
        if self.betas is not None:
            _check(
                len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
                f"optim.betas must be two numbers in [0, 1), got {self.betas!r}",
            )
        if self.eps is not None:
            _positive("optim.eps", self.eps)
        if self.layer_decay is not None:
            _check(0 < self.layer_decay <= 1, f"optim.layer_decay must be in (0, 1] (or null: off), got {self.layer_decay!r}")
        if self.clip_grad is not None:
            _positive("optim.clip_grad", self.clip_grad)

    def peak_lr(self, batch_size: int) -> float:
        return self.lr if self.lr is not None else self.base_lr * batch_size / self.base_batch_size


@dataclass
class LRSchedConfig:
    """Learning-rate schedule (timm's `create_scheduler_v2`), stepped every optimizer update."""

    name: str = "cosine"
    warmup_epochs: float = 5.0
    warmup_lr: float = 1e-6
    min_lr: float = 1e-5
    cooldown_epochs: float = 0.0
    decay_epochs: float | None = None  # step / poly schedules
    decay_rate: float = 0.1

    def __post_init__(self) -> None:
        _check(self.name in LR_SCHEDULERS, f"unknown lr_sched.name {self.name!r}; choose one of {', '.join(LR_SCHEDULERS)}")
        _positive("lr_sched.warmup_epochs", self.warmup_epochs, allow_zero=True)
        _positive("lr_sched.cooldown_epochs", self.cooldown_epochs, allow_zero=True)
        _positive("lr_sched.warmup_lr", self.warmup_lr, allow_zero=True)
        _positive("lr_sched.min_lr", self.min_lr, allow_zero=True)


@dataclass
class MixupConfig:
    """Mixup / CutMix on training batches (timm's `Mixup`). Off when both alphas are 0."""

    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    prob: float = 1.0
    switch_prob: float = 0.5
    mode: str = "batch"

    def __post_init__(self) -> None:
        _positive("mixup.mixup_alpha", self.mixup_alpha, allow_zero=True)
        _positive("mixup.cutmix_alpha", self.cutmix_alpha, allow_zero=True)
        _fraction("mixup.prob", self.prob)
        _fraction("mixup.switch_prob", self.switch_prob)
        _check(self.mode in ("batch", "pair", "elem"), f"mixup.mode must be batch, pair or elem, got {self.mode!r}")

    @property
    def enabled(self) -> bool:
        return (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and self.prob > 0


@dataclass
class EmaConfig:
    """Exponential moving average of the weights (timm's `ModelEmaV3`), evaluated beside the model."""

    enabled: bool = False
    decay: float = 0.99996
    warmup: bool = False

    def __post_init__(self) -> None:
        _check(0 < self.decay < 1, f"ema.decay must be in (0, 1), got {self.decay!r}")


@dataclass
class EvalConfig:
    """Validation: every `interval` epochs (and after the last), at keep ratio `keep_ratio`."""

    interval: int = 1
    keep_ratio: float = 1.0
    batch_size: int | None = None  # per process; None: the training micro-batch size

    def __post_init__(self) -> None:
        _check(self.interval >= 1, f"eval.interval must be >= 1 epoch, got {self.interval}")
        _check(0 < self.keep_ratio <= 1, f"eval.keep_ratio must be in (0, 1], got {self.keep_ratio!r}")
        if self.batch_size is not None:
            _check(self.batch_size >= 1, f"eval.batch_size must be >= 1, got {self.batch_size}")


WANDB_MODES = ("online", "offline", "disabled")


@dataclass
class LoggingConfig:
    """Where `pss train` reports besides train_log.jsonl / val_log.jsonl (see pss.tracking)."""

    csv: bool = True  # summary.csv, one row per epoch (timm's)
    tensorboard: bool = False  # <output>/tensorboard event files (needs the tensorboard package)
    wandb: bool = False  # Weights & Biases (needs the wandb package)
    wandb_project: str = "pss"
    wandb_mode: str | None = None  # online | offline | disabled; None: wandb's default (WANDB_MODE)

    def __post_init__(self) -> None:
        if self.wandb_mode is not None and self.wandb_mode not in WANDB_MODES:
            raise ConfigError(f"logging.wandb_mode must be one of {', '.join(WANDB_MODES)} (or null), got {self.wandb_mode!r}")


def _default_schedule() -> Schedule:
    return schedule_from_dict({"name": "fixed", "rho": 1.0})


@dataclass
class TrainConfig:
    """Everything one `pss train` run needs. `batch_size` is the *global* batch per optimizer step
    (over all processes and accumulation micro-steps), so a recipe means the same thing on 1 or 8 GPUs."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    schedule: Schedule = field(default_factory=_default_schedule)  # keep ratio per step
    # training side per epoch (pss.resolution), e.g. {name: linear, start: 0.5, full_from: 0.8}; null: img_size
    resolution: ResolutionSchedule | None = None
    select: str = DEFAULT_SELECT  # token selection rule in training: random (pss.select) | magnitude | l2 | grid | mixed | jitter
    optim: OptimConfig = field(default_factory=OptimConfig)
    lr_sched: LRSchedConfig = field(default_factory=LRSchedConfig)
    mixup: MixupConfig = field(default_factory=MixupConfig)
    label_smoothing: float = 0.0
    ema: EmaConfig = field(default_factory=EmaConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)  # summary.csv, TensorBoard, W&B
    task: str = "classification"
    epochs: int = 10
    batch_size: int = 128  # global
    accum_steps: int = 1  # gradient-accumulation micro-steps per optimizer step
    amp: str = "auto"  # auto: bf16 on CUDA (fp16 where the GPU lacks bf16), fp32 on CPU (pss.runtime)
    compile: bool | dict[str, Any] = False  # true, or torch.compile options, e.g. {mode: reduce-overhead}
    deterministic: bool = False  # deterministic kernels (bit-reproducible runs and resumes; can be slower)
    device: str = "auto"
    seed: int = 0
    log_interval: int = 20  # steps between host syncs (loss check, log flush, progress bar)
    checkpoint_interval_epochs: int = 1  # save checkpoint-last.pt every N epochs (and after the last)
    checkpoint_interval_steps: int | None = None  # also save it mid-epoch every N steps
    init: str | None = None  # fine-tune from these weights (ours, timm, SimMIM/MAE/BEiT encoder)
    output_dir: str | None = None
    # Compute budget: share of the full-token run's cost this run may spend; the schedule's free
    # parameter (cyclic low, linear/cosine start, fixed rho) is solved to match (pss.budget).
    budget: float | None = None
    # cost per keep ratio: flops (of this model), a `pss bench speed --json` file, or measured (wall-clock
    # with the loader: in the run, or measured:SPEED.json,DATA.json from pss bench speed / data); a recipe
    # writes it as text, parsed once into a pss.budget_spec.CostSpec
    budget_cost: CostSpec = field(default_factory=CostSpec)
    # which lever a budget solves: drop (the keep-ratio schedule), resize (the resolution schedule's start),
    # both (resize takes sqrt of the budget, the keep ratio the rest), or auto: resize when a resolution
    # schedule runs beside every token, both beside a keep-ratio schedule, drop without one (pss.budget)
    budget_lever: str = "auto"
    # Tokens for epochs: train budget_epochs x the epochs at fewer tokens for the same budget (pss.tokens_for_epochs);
    # auto: the factor the budget study measured at this budget (pss.evidence: 1.5 at 0.6), else 1
    budget_epochs: Any = None  # a number >= 1, auto or null: checked by pss.budget_spec.check_settings
    budget_reference: dict[str, Any] | None = None  # informational: the recipe's epochs / budget before budget_epochs
    # predict the run's wall-clock ratio to the full-token run from measured step and loader times
    # before it trains (pss.preflight): auto (runs of >= 500 steps), true, false
    preflight: bool | str = "auto"
    equal_time_of: str | None = None  # informational: this full-token run is the equal-time baseline of that run

    def __post_init__(self) -> None:
        self.schedule = schedule_from_dict(self.schedule)
        _check(self.select in SELECT_RULES, f"unknown selection rule {self.select!r}; choose one of {', '.join(SELECT_RULES)}")
        mine = tasks_of(type(self))  # the classes are defined below; called on construction
        _check(self.task in mine, f"unknown task {self.task!r}; choose one of {', '.join(mine)}")
        _check(0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        _check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        check_count("epochs", self.epochs, 1, MAX_EPOCHS)
        _check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        _check(self.accum_steps >= 1, f"accum_steps must be >= 1, got {self.accum_steps}")
        _check(
            self.batch_size % self.accum_steps == 0,
            f"batch_size ({self.batch_size}) must be divisible by accum_steps ({self.accum_steps})",
        )
        if isinstance(self.compile, dict):
            _check(set(self.compile) <= COMPILE_KEYS, f"compile takes {', '.join(sorted(COMPILE_KEYS))}; got {self.compile!r}")
        _check(self.amp in PRECISIONS, f"unknown amp {self.amp!r}; choose one of {', '.join(PRECISIONS)}")
        _check(self.device in DEVICES, f"unknown device {self.device!r}; choose one of {', '.join(DEVICES)}")
        _check(self.log_interval >= 1, f"log_interval must be >= 1 step, got {self.log_interval}")
        _check(self.checkpoint_interval_epochs >= 1, f"checkpoint_interval_epochs must be >= 1, got {self.checkpoint_interval_epochs}")
        if self.checkpoint_interval_steps is not None:
            _check(
                self.checkpoint_interval_steps >= 1,
                f"checkpoint_interval_steps must be >= 1 (or null: only at epoch ends), got {self.checkpoint_interval_steps}",
            )
        self.budget_cost = check_budget_settings(self)  # budget, budget_lever, budget_epochs, budget_cost
        _check(self.preflight in (True, False, "auto"), f"preflight must be auto, true or false, got {self.preflight!r}")
        if self.mixup.enabled:
            _check(
                (self.batch_size // self.accum_steps) % 2 == 0,
                "mixup/cutmix need an even micro-batch (batch_size / accum_steps per optimizer step)",
            )

    @property
    def trained_select(self) -> str | None:
        """The rule the weights train with, which sets the model's default rule at inference
        (`pss.select.DEFAULT_INFERENCE_SELECT`); None when every step runs every token (a baseline:
        a fixed keep ratio of 1.0, which no budget may solve lower)."""
        full = self.schedule.name == "fixed" and getattr(self.schedule, "rho", 0.0) >= 1.0
        return None if full else self.select

    def compile_options(self) -> dict[str, Any] | None:
        """torch.compile keyword arguments, or None when not compiling. `dynamic=False` unless given: one
        static graph per sequence length (few, on the keep-ratio grid), each CUDA-graphable."""
        if self.compile is False:
            return None
        return {"dynamic": False, **(self.compile if isinstance(self.compile, dict) else {})}

    def peak_lr(self) -> float:
        return self.optim.peak_lr(self.batch_size)


# ---------------------------------------------------------------------------------------------
# pre-training (task: simmim; the task itself: pss.tasks.simmim)


@dataclass
class MimConfig:
    """The `mim:` section of a pre-training recipe (SimMIM's MASK_RATIO / MASK_PATCH_SIZE)."""

    mask_ratio: float = 0.6  # share of mask regions masked per image (exactly ceil(ratio * regions))
    mask_patch_size: int = 32  # side of a mask region in pixels: a multiple of the patch size (SimMIM: 32 at 224 px)
    eval_seed: int = 0  # validation masks are drawn from this seed
    num_recon_images: int = 8  # validation images in reconstructions.png; 0: no picture

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_ratio < 1.0:
            raise ConfigError(f"mim.mask_ratio must be in (0, 1), got {self.mask_ratio!r}")
        if self.mask_patch_size < 1:
            raise ConfigError(f"mim.mask_patch_size must be >= 1 pixel, got {self.mask_patch_size}")
        if self.eval_seed < 0:
            raise ConfigError(f"mim.eval_seed must be >= 0, got {self.eval_seed}")
        if not 0 <= self.num_recon_images <= 64:
            raise ConfigError(f"mim.num_recon_images must be in [0, 64], got {self.num_recon_images}")


@dataclass
class PretrainConfig(TrainConfig):
    """A `TrainConfig` for masked-image-modelling pre-training: one more section, `mim`.

    Labels are not used (the data may be any class-folder set); `model.num_classes` only sizes a
    head that is removed before training. Refused here, before any data is read: a keep-ratio
    schedule other than 1.0, mixup / cutmix, label smoothing, and evaluation below keep ratio 1.0
    (the model and mask geometry are the task's to check: pss.tasks.simmim.check).
    """

    mim: MimConfig = field(default_factory=MimConfig)
    task: str = "simmim"

    def __post_init__(self) -> None:
        super().__post_init__()
        s = self.schedule
        if not (isinstance(s, FixedSchedule) and s.rho == 1.0):
            raise ConfigError(
                f"pre-training runs every patch (SimMIM masks patches, it does not drop them), but the recipe's "
                f"schedule is {s.to_dict()}: remove `schedule` from the pre-training recipe (or set schedule: 1.0) "
                "and put the patch sampling schedule in the fine-tuning recipe"
            )
        if self.mixup.enabled:
            raise ConfigError("mixup / cutmix mix labels, which pre-training does not use: remove the `mixup` section")
        if self.label_smoothing:
            raise ConfigError("label_smoothing has no effect in pre-training (no labels): remove it")
        if self.eval.keep_ratio != 1.0:
            raise ConfigError("eval.keep_ratio must be 1.0 in pre-training (the reconstruction loss uses every patch)")


# The config class of each `task:` of a recipe (what it learns: pss.tasks).
TASK_CONFIGS: dict[str, type[TrainConfig]] = {"classification": TrainConfig, "simmim": PretrainConfig}


def tasks_of(cls: type) -> tuple[str, ...]:
    """The `task:` values whose recipes `cls` validates (TrainConfig: classification)."""
    return tuple(t for t, c in TASK_CONFIGS.items() if c is cls)


def config_class(task: Any) -> type[TrainConfig]:
    """The config class of a recipe's `task:` (TrainConfig for classification and unknown values,
    which TrainConfig then refuses with the list of valid tasks)."""
    return TASK_CONFIGS.get(task, TrainConfig) if isinstance(task, str) else TrainConfig
