"""Datasets: per-image transforms (timm's factory), checked image folders, and images decoded once
into one uint8 tensor (`InMemoryDataset`, ``data.in_memory``, `decode_all`); the sources
(`pss.data.sources`) build them and `pss.data.build.build_datasets` picks among them."""
from __future__ import annotations

import dataclasses
import functools

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T
from torchvision.datasets import ImageFolder

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.data.auto_augment import posterize as timm_posterize

from pss.config import DataConfig
from pss.data.readable import first_readable, load_rgb
from pss.errors import DataError

log = logging.getLogger("pss.data")

SMALL_IMAGE_MAX = 64  # at or below this size, train crops are CIFAR-style (pad + random crop), not RRC


class InMemoryDataset(Dataset):
    """Images held as one uint8 tensor (N, 3, H, W) with long targets (N,), on any device.

    With ``transform`` (a PIL transform) items go through it like a folder dataset would; without,
    items are the normalised image, and `build_loader` serves whole batches from the tensor with
    on-device augmentation (`InMemoryLoader`).
    """

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, classes: list[str],
                 mean: Sequence[float] = IMAGENET_DEFAULT_MEAN, std: Sequence[float] = IMAGENET_DEFAULT_STD,
                 transform: Callable[[Image.Image], torch.Tensor] | None = None) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        self.images = images
        self.targets = targets.to(images.device, torch.long)
        self.classes = list(classes)
        self.mean = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
        # (x / 255 - mean) / std folded into one multiply-subtract
        self._scale, self._shift = 1 / (255 * self.std), self.mean / self.std
        self.transform = transform

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def device(self) -> torch.device:
        return self.images.device

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> normalised float32."""
        return images.float().mul_(self._scale).sub_(self._shift)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self.transform is not None:
            pil = Image.fromarray(self.images[index].permute(1, 2, 0).cpu().numpy())
            return self.transform(pil), int(self.targets[index])
        return self.normalize(self.images[index : index + 1])[0], int(self.targets[index])


# Grey images of more than 8 bits per pixel; PIL's convert("RGB") clips them at 255 (a 16-bit PNG
# comes out almost white), so `load_rgb` scales them to 8 bits instead.
class CheckedImageFolder(ImageFolder):
    """`ImageFolder` over the files `check_data` accepted (no second directory walk).

    A file that fails to decode mid-epoch (possible when only a sample was scanned, or a file changed
    since) is logged and replaced by the next readable sample with ``on_corrupt='skip'``, and raises
    `DataError` with ``on_corrupt='fail'`` - it never kills an epoch with a PIL traceback.
    """

    def __init__(self, root: str, samples: list[tuple[str, int]], transform: Callable | None = None,
                 on_corrupt: str = "skip", side_transform: Callable[[int], Callable] | None = None) -> None:
        self._checked = samples
        self.on_corrupt = on_corrupt
        super().__init__(root, transform=transform, loader=load_rgb)
        # a lower training resolution (pss.resolution) decoded and augmented in the workers: the train
        # transform built for a side, once per side
        self._side_transform, self._full_transform = side_transform, transform
        self._side_transforms: dict[int, Callable] = {}
        self.side: int | None = None

    def set_side(self, side: int | None) -> bool:
        """Decode and augment at `side` px from now on (None: the recipe's size): JPEGs decoded at about that
        size (`load_rgb`'s draft), the train transform built for it. Set before an epoch's iterator is made,
        so its workers get it. False where this dataset has no transform per side (the loop then resizes
        the batches on the device)."""
        if self._side_transform is None:
            return False
        self.side = side
        if side is None:
            self.transform, self.loader = self._full_transform, load_rgb
        else:
            if side not in self._side_transforms:
                self._side_transforms[side] = self._side_transform(side)
            self.transform, self.loader = self._side_transforms[side], functools.partial(load_rgb, draft=side)
        return True

    def make_dataset(self, directory: Any, class_to_idx: dict[str, int], extensions: Any = None,
                     is_valid_file: Any = None, allow_empty: bool = False) -> list[tuple[str, int]]:
        return list(self._checked)

    def _load(self, index: int) -> tuple[Any, int]:
        path, target = self.samples[index]
        return self.loader(path), target

    def __getitem__(self, index: int) -> tuple[Any, int]:
        # only the decode is guarded: an augmentation that fails is the augmentation's error, not the image's
        image, target = first_readable(self._load, index, len(self.samples), lambda i: self.samples[i][0],
                                       self.on_corrupt, "remove or replace it", self.root)
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target


def timm_train_transform(cfg: DataConfig) -> Callable:
    """Train transform from timm's factory; small images get a CIFAR-style crop instead of RRC.

    RandomResizedCrop with timm's default area range (0.08-1) throws away most of a 32 px image,
    so at or below SMALL_IMAGE_MAX px we keep timm's colour/RandAugment and normalise/RandomErasing
    stages but replace the first stage with resize -> random crop with zero padding -> h-flip
    (the standard CIFAR recipe, as in DeiT's CIFAR fine-tuning).
    """
    from timm.data import create_transform

    common = dict(input_size=cfg.img_size, is_training=True, auto_augment=cfg.auto_augment,
                  color_jitter=cfg.color_jitter or None, interpolation=cfg.interpolation,
                  mean=cfg.mean, std=cfg.std, re_prob=cfg.re_prob, re_mode=cfg.re_mode, re_count=cfg.re_count)
    if cfg.img_size > SMALL_IMAGE_MAX:
        return posterize_to_zero_bits(create_transform(**common, hflip=cfg.hflip, scale=cfg.scale))
    _, secondary, final = create_transform(**common, hflip=0.0, separate=True)
    interp = T.InterpolationMode.BICUBIC if cfg.interpolation == "random" else T.InterpolationMode(cfg.interpolation)
    primary = [T.Resize(cfg.img_size, interpolation=interp), T.CenterCrop(cfg.img_size),  # no-ops at native size
               T.RandomCrop(cfg.img_size, padding=cfg.crop_padding)]
    if cfg.hflip > 0:
        primary.append(T.RandomHorizontalFlip(cfg.hflip))
    return posterize_to_zero_bits(T.Compose(primary + list(secondary.transforms) + list(final.transforms)))


def _posterize(img: Image.Image, bits_to_keep: int, **kwargs: Any) -> Image.Image:
    if bits_to_keep <= 0:  # what Pillow's posterize gave for 0 bits before it refused them: every pixel 0
        return Image.new(img.mode, img.size)
    return timm_posterize(img, bits_to_keep, **kwargs)


def posterize_to_zero_bits(transform: Callable) -> Callable:
    """`transform` with timm's posterize operations (RandAugment, AutoAugment, AugMix) taking 0 bits as Pillow
    used to: a black image. With `inc1` timm maps the top magnitude (10, which RandAugment's magnitude noise
    reaches: the DeiT recipe's rand-m9-mstd0.5-inc1 in about one of 44 of its posterize operations) to 0 bits
    kept, and recent Pillow refuses 0 bits with a ValueError, which would stop the loader mid-epoch. Set once,
    when the transform is built."""
    for t in getattr(transform, "transforms", [transform]):
        ops = list(getattr(t, "ops", None) or [])
        for sub in getattr(t, "policy", None) or []:  # AutoAugment: sub-policies of ops
            ops += list(sub)
        for op in ops:
            if str(getattr(op, "name", "")).startswith("Posterize"):
                op.aug_fn = _posterize
    return transform


def train_transform_at(cfg: DataConfig, side: int) -> Callable:
    """The recipe's train transform at `side` px (a lower training resolution, pss.resolution)."""
    return timm_train_transform(dataclasses.replace(cfg, img_size=side))


def timm_eval_transform(cfg: DataConfig, normalize: bool = True) -> Callable:
    """Eval transform: resize + centre crop (small images: crop_pct 1, i.e. just resize) -> tensor."""
    from timm.data import create_transform

    crop_pct = cfg.crop_pct if cfg.crop_pct is not None else (1.0 if cfg.img_size <= SMALL_IMAGE_MAX else None)
    interp = "bicubic" if cfg.interpolation == "random" else cfg.interpolation
    return create_transform(cfg.img_size, is_training=False, interpolation=interp, mean=cfg.mean, std=cfg.std,
                            crop_pct=crop_pct, normalize=normalize)


def build_transforms(cfg: DataConfig) -> tuple[Callable, Callable]:
    """(train, eval) per-image transforms: PIL image -> normalised float tensor (3, img_size, img_size)."""
    return timm_train_transform(cfg), timm_eval_transform(cfg)


_capped: set[tuple[int, int]] = set()


def usable_workers(asked: int) -> int:
    """`data.num_workers`, at most the CPU cores this process may use: more loader processes than cores only
    contend with each other and the training (8 default workers on a 1-core machine). Warned once."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if asked <= cores:
        return asked
    if (asked, cores) not in _capped:
        _capped.add((asked, cores))
        log.warning("data.num_workers %d capped at %d, the CPU cores this process may use", asked, cores)
    return cores


def _check_memory(num: int, size: int, device: torch.device) -> None:
    need = num * 3 * size * size
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return
    if need > 0.5 * free:  # leave room for the model, activations and the other split
        raise DataError(f"data.in_memory needs {need / 2**30:.1f} GiB for {num} images at {size} px but only "
                        f"{free / 2**30:.1f} GiB is free on {device}: set data.in_memory: false "
                        "(or a smaller img_size)")


def decode_all(ds: Dataset, size: int, num_workers: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode every item (a uint8 (3, size, size) tensor) once into one (N, 3, size, size) tensor."""
    from tqdm.auto import tqdm

    _check_memory(len(ds), size, device)
    images = torch.empty(len(ds), 3, size, size, dtype=torch.uint8)
    targets = torch.empty(len(ds), dtype=torch.long)
    loader = DataLoader(ds, batch_size=256, num_workers=usable_workers(num_workers), shuffle=False)
    start = 0
    for x, y in tqdm(loader, desc="decoding images", unit="batch", disable=len(ds) < 20_000, leave=False):
        images[start : start + len(x)] = x
        targets[start : start + len(x)] = y
        start += len(x)
    return images.to(device), targets.to(device)
