"""Loaders: a seeded, sharded sampler, and batches from in-memory or folder datasets (`build_loader`)."""
from __future__ import annotations

import math
import os
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pss.config import DataConfig
from pss.data.augment import random_crop_flip, random_erase
from pss.data.datasets import InMemoryDataset, usable_workers
from pss.errors import ConfigError


def _epoch_seed(seed: int, epoch: int, salt: int = 0) -> int:
    return int(np.random.SeedSequence([seed, epoch, salt]).generate_state(1)[0])


class ShardSampler(Sampler[int]):
    """Indices for one rank: a (seed, epoch)-seeded permutation (or the identity), then ``[rank::world_size]``.

    ``pad=True`` (training) wraps the permutation so every rank gets the same count, as
    DistributedSampler does - ranks must take the same number of optimizer steps. ``pad=False``
    (evaluation) shards exactly, without duplicates: shard sizes then differ by at most one, so reduce
    eval metrics once after the loop rather than per batch.
    """

    def __init__(self, num: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1,
                 pad: bool = True) -> None:
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is not in [0, world_size={world_size})")
        self.num, self.shuffle, self.seed, self.pad = num, shuffle, seed, pad
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> torch.Tensor:
        if self.shuffle:
            g = torch.Generator().manual_seed(_epoch_seed(self.seed, self.epoch))
            order = torch.randperm(self.num, generator=g)
        else:
            order = torch.arange(self.num)
        if self.pad and self.num % self.world_size:
            extra = self.world_size - self.num % self.world_size
            order = torch.cat([order, order.repeat(math.ceil(extra / self.num))[:extra]])
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        if self.pad:
            return math.ceil(self.num / self.world_size)
        return len(range(self.rank, self.num, self.world_size))


class InMemoryLoader:
    """Batches straight from an `InMemoryDataset`, augmented on its device.

    Train augmentation (`pss.data.augment`), vectorised over the batch: random crop of the zero-padded
    image and horizontal flip (`random_crop_flip`), normalisation, then random erasing if
    ``re_prob`` > 0 (`random_erase`). Order depends only on (seed, epoch, rank, world_size);
    crop/flip offsets on (seed, epoch, rank) too, so a resumed run sees the same batches.
    """

    def __init__(self, ds: InMemoryDataset, batch_size: int, train: bool, cfg: DataConfig,
                 sampler: ShardSampler, drop_last: bool) -> None:
        self.dataset, self.batch_size, self.train, self.cfg = ds, batch_size, train, cfg
        self.sampler, self.drop_last = sampler, drop_last

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def augment(self, images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Random padded crop + h-flip of a uint8 batch (B, 3, H, W) (`random_crop_flip`)."""
        return random_crop_flip(images, self.cfg.crop_padding, self.cfg.hflip, g)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        ds = self.dataset
        idx = self.sampler.indices().to(ds.device)
        # Offsets drawn on the CPU (tiny), seeded per (seed, epoch, rank): no device generator needed.
        g = torch.Generator().manual_seed(_epoch_seed(self.sampler.seed, self.sampler.epoch, 1 + self.sampler.rank))
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            batch = idx[start : start + self.batch_size]
            images = ds.images[batch]
            if self.train:
                images = self.augment(images, g)
            images = ds.normalize(images)
            if self.train and self.cfg.re_prob > 0:
                images = random_erase(images, self.cfg.re_prob, self.cfg.re_mode, self.cfg.re_count, g)
            yield images, ds.targets[batch]


def max_workers() -> int:
    """The most loader processes pss starts: 8 per CPU, at least 64. Far more than the CPUs can feed only
    costs memory and file descriptors, and at 1000 a run stalled after a few steps."""
    return max(64, 8 * (os.cpu_count() or 1))


def check_num_workers(num_workers: int) -> None:
    """ConfigError (one line) for a worker count past `max_workers`, before any process starts."""
    if num_workers > max_workers():
        cpus = os.cpu_count() or 1
        raise ConfigError(f"data.num_workers {num_workers} is more loader processes than this machine's {cpus} CPU(s) "
                          f"can feed (at most {max_workers()}); use about {min(cpus, 16)} (pss bench data --workers "
                          "compares counts)")


class FolderLoader:
    """A `DataLoader` over a per-image dataset with a `ShardSampler`, exposing ``set_epoch``.

    Workers are re-created each epoch and seeded from (seed, epoch), so augmentations too are
    reproducible on resume (with num_workers > 0).
    """

    def __init__(self, ds: Dataset, batch_size: int, cfg: DataConfig, sampler: ShardSampler, drop_last: bool) -> None:
        check_num_workers(cfg.num_workers)
        self.dataset, self.sampler, self.batch_size, self.drop_last = ds, sampler, batch_size, drop_last
        self.generator = torch.Generator()
        self.loader = DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=usable_workers(cfg.num_workers),
                                 drop_last=drop_last, pin_memory=torch.cuda.is_available(),
                                 generator=self.generator, persistent_workers=False)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def set_side(self, side: int | None) -> bool:
        """This epoch's training side (pss.resolution), decoded in the workers where the dataset can
        (`CheckedImageFolder.set_side`); call before iterating: workers are made per epoch."""
        set_side = getattr(self.dataset, "set_side", None)
        return bool(set_side(side)) if set_side is not None else False

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.generator.manual_seed(_epoch_seed(self.sampler.seed, self.sampler.epoch, 1 + self.sampler.rank))
        return iter(self.loader)


def build_loader(ds: Dataset, batch_size: int, train: bool, cfg: DataConfig, distributed: bool = False,
                 seed: int = 0, drop_last: bool | None = None, *, rank: int | None = None,
                 world_size: int | None = None) -> InMemoryLoader | FolderLoader:
    """Iterable of (images float (B, 3, H, W) normalised, targets long (B,)); call ``set_epoch(e)`` each epoch.

    ``train``: shuffle (seeded by (seed, epoch)), augment, and drop the last partial batch by default.
    ``distributed``: shard by the torch.distributed rank/world size (or pass ``rank``/``world_size``).
    In-memory datasets yield batches on their own device; folder datasets yield CPU tensors.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if rank is None or world_size is None:
        if distributed:
            if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
                raise ConfigError("build_loader(distributed=True) needs torch.distributed initialised "
                                  "(run under torchrun), or explicit rank= and world_size=")
            rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
        else:
            rank, world_size = 0, 1
    drop_last = train if drop_last is None else drop_last
    sampler = ShardSampler(len(ds), shuffle=train, seed=seed, rank=rank, world_size=world_size, pad=train)
    if len(ds) == 0:
        raise ConfigError(f"the {'training' if train else 'evaluation'} split holds no images (none listed, or none "
                          "readable): check data.path and the split's folders / column")
    if drop_last and len(sampler) < batch_size:
        raise ConfigError(f"batch_size {batch_size} is larger than this rank's {len(sampler)} images, so no "
                          "full batch exists: lower the batch size or use more data")
    if isinstance(ds, InMemoryDataset) and ds.transform is None:
        return InMemoryLoader(ds, batch_size, train, cfg, sampler, drop_last)
    return FolderLoader(ds, batch_size, cfg, sampler, drop_last)
