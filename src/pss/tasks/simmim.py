"""`task: simmim`: SimMIM masked-image modelling (Xie et al., 2022; `pss.models.simmim`) on the training
engine: random square regions of `mim.mask_patch_size` pixels are replaced by a learned mask token, a
linear decoder predicts raw (normalised) pixels, the loss is the L1 error on masked pixels only. The
recipe is a `pss.settings.PretrainConfig`; `pss pretrain` (pss.pretrain) runs it.

At the end of pre-training the run folder gets `RunDir.ENCODER` (the encoder under the classifier's
parameter names, what `pss train --init` loads) and `RunDir.RECONSTRUCTIONS` (input / masked input /
prediction / prediction pasted into the visible pixels, for a few validation images with fixed masks).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from pss.checkpoint import export_safetensors
from pss.engine import BaseTask
from pss.errors import ConfigError
from pss.models.simmim import SimMIM, check_mask_args
from pss.models.vit import ARCHS, PssVisionTransformer
from pss.runfolder import RunDir
from pss.runtime import Amp, DistInfo, unwrap_model
from pss.settings import PretrainConfig, TrainConfig

log = logging.getLogger("pss.pretrain")

__all__ = [
    "MIMTask",
    "build",
    "check",
    "check_mim_geometry",
    "save_reconstructions",
]

MIN_MASK_REGIONS = 4  # fewer regions per image and a "share" of masked regions means little


def check(cfg: TrainConfig) -> None:
    """The checks of a pre-training recipe that need the model registry, before any data is read: our own
    ViT, pooled by its class token, and a mask geometry that fits its patches (`prepare_model` checks it
    again on the built model)."""
    if not cfg.model.name.startswith("pss_vit_"):
        raise ConfigError(
            f"pss pretrain trains our own ViT (model.name pss_vit_*), got {cfg.model.name!r}: use the pss_vit_* "
            "model of the same size, e.g. pss_vit_base_patch16_224 for vit_base_patch16_224"
        )
    if cfg.model.kwargs.get("global_pool", "token") != "token":
        raise ConfigError(
            "pre-train with model.kwargs.global_pool: token (the default): the average-pooling model has no final "
            "norm before the decoder. Fine-tune with global_pool: avg, as SimMIM and MAE do: its fc_norm starts fresh"
        )
    arch = ARCHS.get(cfg.model.name, {})
    patch = cfg.model.kwargs.get("patch_size", arch.get("patch_size"))
    if patch is not None and isinstance(cfg, PretrainConfig):
        check_mim_geometry(cfg, cfg.model.img_size or cfg.data.img_size, patch)


def build(cfg: TrainConfig, class_names: list[str]) -> MIMTask:
    """The engine's Task for `task: simmim` (labels unused)."""
    if not isinstance(cfg, PretrainConfig):
        raise ConfigError("task: simmim needs a pre-training recipe: run it with `pss pretrain`")
    return MIMTask(cfg)


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
