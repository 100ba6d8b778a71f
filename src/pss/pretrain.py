"""`pss pretrain`: SimMIM masked-image-modelling pre-training of the PSS ViT encoder.

The pre-training run is a `pss train` run whose task is masked-image modelling: the same engine
(step order, logging, checkpointing, exact resume, DDP, AMP), the same recipe format plus a `mim:`
section, the same run folder. Only what is learned differs (`MIMTask`):

    cfg, resume_from = resolve_pretrain_config("configs/cifar10_pretrain_simmim.yaml", output="runs/mim")
    summary = pretrain(cfg, resume_from=resume_from)
    # then fine-tune, with or without PSS:
    #   pss train --config configs/cifar10_finetune_pss.yaml --init runs/mim/encoder.safetensors

SimMIM (Xie et al., 2022; `pss.models.simmim`): random square regions of `mim.mask_patch_size`
pixels (default share 0.6) are replaced by a learned mask token before the position embedding,
the encoder runs on every token, a linear decoder predicts raw (normalised) pixels, and the loss is
the L1 error on masked pixels only. Patch sampling is for fine-tuning: pre-training runs every
patch (the schedule must stay at keep ratio 1.0).

Besides `pss train`'s files (config.yaml, train_log.jsonl, val_log.jsonl with the masked-pixel L1
loss on validation images, summary.json, checkpoint-last.pt, checkpoint-best.pt, and
model.safetensors = the whole SimMIM model of the lowest validation loss), the run folder gets, at
the end of pre-training:

    encoder.safetensors   the encoder after the last step, under the classifier's parameter names and
                          without a head: what `pss train --init` loads (metadata: architecture)
    reconstructions.png   input / masked input / prediction / prediction pasted into the visible
                          pixels, for a few validation images with fixed masks

The validation loss uses fixed masks (drawn from `mim.eval_seed`), so values are comparable across
evaluations and runs, and evaluating never disturbs the random stream of training.

A recipe with `task: simmim` is a PretrainConfig wherever it is loaded (`pss.config.load_config`),
so `pss train --config configs/cifar10_pretrain_simmim.yaml` pre-trains too; `pss pretrain` also
accepts recipes without `task:` and refuses classification ones.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from pss.checkpoint import export_safetensors
from pss.config import TrainConfig
from pss.engine import BaseTask
from pss.errors import ConfigError
from pss.models.simmim import SimMIM, check_mask_args
from pss.models.vit import PssVisionTransformer
from pss.runfolder import RunDir
from pss.runtime import Amp, DistInfo, unwrap_model
from pss.schedule import FixedSchedule

log = logging.getLogger("pss.pretrain")

__all__ = [
    "MIMTask",
    "MimConfig",
    "PretrainConfig",
    "pretrain",
    "resolve_pretrain_config",
    "save_reconstructions",
]

MIN_MASK_REGIONS = 4  # fewer regions per image and a "share" of masked regions means little


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
    schedule other than 1.0, mixup / cutmix, label smoothing, and evaluation below keep ratio 1.0.
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

    def validate(self) -> None:
        super().validate()
        if not self.model.name.startswith("pss_vit_"):
            raise ConfigError(
                f"pss pretrain trains our own ViT (model.name pss_vit_*), got {self.model.name!r}: use the pss_vit_* "
                "model of the same size, e.g. pss_vit_base_patch16_224 for vit_base_patch16_224"
            )
        if self.model.kwargs.get("global_pool", "token") != "token":
            raise ConfigError(
                "pre-train with model.kwargs.global_pool: token (the default): the average-pooling model has no final "
                "norm before the decoder. Fine-tune with global_pool: avg, as SimMIM and MAE do: its fc_norm starts fresh"
            )
        # The mask geometry, before any data is read (prepare_model checks it again on the built model).
        from pss.models.vit import ARCHS

        arch = ARCHS.get(self.model.name, {})
        patch = self.model.kwargs.get("patch_size", arch.get("patch_size"))
        if patch is not None:
            check_mim_geometry(self, self.model.img_size or self.data.img_size, patch)


def check_mim_geometry(cfg: PretrainConfig, img_size: int, patch_size: int) -> None:
    """Check the mask geometry against the model (its patch size is known once the model exists)."""
    mps = cfg.mim.mask_patch_size
    check_mask_args(img_size, patch_size, mps, cfg.mim.mask_ratio)
    regions = (img_size // mps) ** 2
    if regions < MIN_MASK_REGIONS:
        raise ConfigError(
            f"mim.mask_patch_size {mps} leaves only {regions} mask region(s) in a {img_size} px image: use a smaller "
            f"multiple of the patch size {patch_size} (e.g. {max(patch_size, img_size // 4)})"
        )


# ---------------------------------------------------------------------------------------------
# the task


class MIMTask(BaseTask):
    """Masked image modelling (SimMIM) on the training engine's `Task` protocol.

    `prepare_model` turns the recipe's classifier into `SimMIM(encoder)`; `loss` is the masked-pixel
    L1 loss of fresh random masks; `evaluate` is the same loss on validation images with masks from
    a fixed seed; `on_train_end` writes encoder.safetensors and reconstructions.png.
    """

    metric = "loss"
    higher_is_better = False

    def __init__(self, cfg: PretrainConfig) -> None:
        self.cfg = cfg
        self.mim = cfg.mim

    def prepare_model(self, model: nn.Module) -> SimMIM:
        if not isinstance(model, PssVisionTransformer):
            raise ConfigError(f"pss pretrain needs a pss_vit_* encoder, got {type(model).__name__}")
        check_mim_geometry(self.cfg, model.patch_embed.img_size[0], model.patch_embed.patch_size[0])
        model.reset_classifier(0)  # the encoder has no head; fine-tuning adds a fresh one
        return SimMIM(model, mask_ratio=self.mim.mask_ratio, mask_patch_size=self.mim.mask_patch_size)

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images = batch[0]  # labels are not used
        return model(images).loss, {}

    def _eval_generator(self, rank: int) -> torch.Generator:
        # One stream per rank (the shards differ), the same at every evaluation.
        return torch.Generator().manual_seed(self.mim.eval_seed * 1_000_003 + rank)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Any, amp: Amp, dist_info: DistInfo) -> dict[str, float]:
        model.eval()
        bare: SimMIM = unwrap_model(model)
        device = next(bare.parameters()).device
        g = self._eval_generator(dist_info.rank)
        # Every image has the same number of masked pixels, so the mean over images is the image-
        # weighted mean of the batch losses; sums stay on the device (one host sync at the end).
        sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss * images, images
        for batch in loader:
            images = batch[0].to(device, non_blocking=True)
            mask = bare.make_mask(images.shape[0], "cpu", g).to(device, non_blocking=True)
            with amp.autocast():
                out = model(images, mask)
            n = images.shape[0]
            sums += torch.stack([out.loss.detach().double() * n, torch.tensor(float(n), dtype=torch.float64, device=device)])
        if dist_info.enabled:
            dist.all_reduce(sums)
        loss_sum, n = sums.tolist()
        return {"loss": loss_sum / max(n, 1.0)}

    def on_train_end(self, model: nn.Module, *, folder: Path, val_loader: Any, amp: Amp, dist_info: DistInfo,
                     step: int, config: dict[str, Any]) -> dict[str, Any]:
        """Write the encoder for fine-tuning and the reconstruction picture (rank 0); returns summary entries."""
        if not dist_info.is_main:
            return {}
        bare: SimMIM = unwrap_model(model)
        run = RunDir(folder)
        m = self.cfg.model
        arch = {"name": m.name, "img_size": m.img_size, **m.kwargs}
        export_safetensors(
            bare.encoder_state_dict(), run.encoder,
            metadata={"pss_encoder": arch, "pss_pretrain_config": config, "step": step, "format": "pss-simmim-encoder"},
        )
        out: dict[str, Any] = {"encoder": RunDir.ENCODER}
        log.info("encoder for fine-tuning: %s  (pss train --init %s)", run.encoder, run.encoder)
        if self.mim.num_recon_images and val_loader is not None:
            images = _spread_images(val_loader, self.mim.num_recon_images)
            if images is not None:
                loss = save_reconstructions(
                    bare, images, self.cfg.data.mean, self.cfg.data.std, run / RunDir.RECONSTRUCTIONS, amp=amp,
                    seed=self.mim.eval_seed, title=f"SimMIM reconstructions after {step} steps",
                )
                out.update(reconstructions=RunDir.RECONSTRUCTIONS, reconstruction_loss=loss)
        return out


def _spread_images(loader: Any, n: int) -> torch.Tensor | None:
    """`n` validation images evenly spread over the set (so a class-sorted folder shows several
    classes, not the first class's first images), as the evaluation sees them (normalised)."""
    ds = getattr(loader, "dataset", None)
    if ds is None or len(ds) == 0:
        return None
    idx = torch.linspace(0, len(ds) - 1, min(n, len(ds))).round().long().unique().tolist()
    return torch.stack([ds[i][0] for i in idx])


# ---------------------------------------------------------------------------------------------
# the picture


@torch.no_grad()
def save_reconstructions(
    model: SimMIM,
    images: torch.Tensor,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    path: str | Path,
    *,
    amp: Amp | None = None,
    seed: int = 0,
    title: str = "SimMIM reconstructions",
) -> float:
    """Plot input / masked input / prediction / prediction with the visible pixels pasted back, one
    column per image (normalised images (B, 3, H, W) are un-normalised for display); returns the
    masked-pixel L1 loss of these images."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    images = images.to(device)
    mask = model.make_mask(images.shape[0], "cpu", torch.Generator().manual_seed(seed)).to(device)
    ctx = amp.autocast() if amp is not None else torch.autocast(device.type, enabled=False)
    with ctx:
        out = model(images, mask)
    model.train(was_training)
    pred = out.pred.float()
    gh, gw = model.encoder.patch_embed.grid_size
    p = model.patch_size
    pix = mask.view(-1, 1, gh, gw).repeat_interleave(p, 2).repeat_interleave(p, 3).float()  # (B, 1, H, W), 1 = masked

    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)

    def show(x: torch.Tensor) -> torch.Tensor:  # normalised -> [0, 1] RGB, (B, H, W, 3) on the CPU
        return (x.float() * s + m).clamp(0, 1).permute(0, 2, 3, 1).cpu()

    hidden = pix.cpu().permute(0, 2, 3, 1)  # (B, H, W, 1)
    rows = [
        ("input", show(images)),
        ("masked input", show(images) * (1 - hidden) + 0.5 * hidden),  # masked regions shown grey
        ("prediction", show(pred)),
        ("prediction +\nvisible pixels", show(pred * pix + images * (1 - pix))),
    ]
    loss = float(out.loss)
    _save_image_rows(rows, path, f"{title}  (mask ratio {model.mask_ratio:g}, masked-pixel L1 {loss:.3f})")
    return loss


def _save_image_rows(rows: list[tuple[str, torch.Tensor]], path: str | Path, title: str) -> None:
    """One labelled row per (label, images (B, H, W, 3) in [0, 1]), one column per image, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = rows[0][1].shape[0]
    fig, axes = plt.subplots(len(rows), n, figsize=(1.3 * n + 1.2, 1.35 * len(rows) + 0.5), squeeze=False)
    for r, (label, batch) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(batch[c].numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# entry points


def pretrain_config_from_dict(d: dict[str, Any]) -> PretrainConfig:
    """A PretrainConfig from a recipe mapping; `task` defaults to simmim, a classification recipe is refused."""
    from pss.config import build_config, tasks_of

    if not isinstance(d, dict):
        raise ConfigError(f"the pre-training config must be a mapping of settings, got {type(d).__name__}")
    d = {**d, "task": d.get("task") or "simmim"}
    if d["task"] not in tasks_of(PretrainConfig):
        raise ConfigError(
            f"pss pretrain runs masked-image modelling (task: simmim), but the recipe says task: {d['task']}: "
            "train it with `pss train`, or pass a pre-training recipe such as configs/cifar10_pretrain_simmim.yaml"
        )
    return build_config(PretrainConfig, d)


def resolve_pretrain_config(
    config: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    data: str | None = None,
    output: str | None = None,
    init: str | None = None,
    resume: str | bool | None = None,
) -> tuple[PretrainConfig, Path | None]:
    """As `pss.train.resolve_config`, for a pre-training recipe (see there)."""
    from pss.resolve import resolve_config

    return resolve_config(
        config, overrides, data=data, output=output, init=init, resume=resume, from_dict=pretrain_config_from_dict
    )


def pretrain(cfg: PretrainConfig, *, resume_from: str | Path | None = None, overwrite: bool = False,
             quiet: bool = False) -> dict[str, Any]:
    """Pre-train as `cfg` says; returns summary.json's content (see the module docstring)."""
    from pss.train import train

    if not isinstance(cfg, PretrainConfig):
        raise ConfigError("pretrain() needs a PretrainConfig (resolve_pretrain_config); use pss.train.train for classification")
    return train(cfg, resume_from=resume_from, overwrite=overwrite, quiet=quiet)


def simmim_task(cfg: TrainConfig, class_names: list[str]) -> MIMTask:
    """The engine's Task for `task: simmim` (pss.config.TASKS)."""
    if not isinstance(cfg, PretrainConfig):
        raise ConfigError("task: simmim needs a pre-training recipe: run it with `pss pretrain`")
    return MIMTask(cfg)

