"""Where and how a model runs: device, precision, process group facts, wrappers, and top-k counting.

One rule for every command (`pss train`, `pss pretrain`, `pss sweep`, `pss bench`, `pss viz`):

    device = resolve_device("auto")              # the GPU when there is one, else the CPU
    device = resolve_device("auto", dist_info)   # in a torchrun job: this process's GPU (LOCAL_RANK)
    amp = resolve_amp("auto", device)            # bf16 on CUDA GPUs that support it, fp16 on other
                                                 # CUDA GPUs, fp32 on the CPU (and any other device)
    with amp.autocast():                         # torch.autocast, or nothing for fp32
        logits = model(images)

`unwrap_model` reaches the bare model through DDP (`.module`) and torch.compile (`._orig_mod`)
wrappers, in any order and depth; `synchronize` waits for queued kernels before a clock is read.
"""
from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from pss.errors import ConfigError, PssError

__all__ = [
    "PRECISIONS",
    "Amp",
    "DistInfo",
    "agree",
    "autocast",
    "init_distributed",
    "resolve_amp",
    "resolve_device",
    "seed_everything",
    "synchronize",
    "to_device",
    "topk_correct",
    "unwrap_model",
    "wraps_ddp",
]

# Precision names: "auto" and the autocast dtype each one means (None: fp32, no autocast).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a torchrun job (a single process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def autocast(device: torch.device | str, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """torch.autocast for `dtype` (bf16/fp16) on `device`'s type, or nothing for fp32 (None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


@dataclass(frozen=True)
class Amp:
    """Mixed precision: autocast dtype (None: fp32); fp16 is the one that needs loss scaling."""

    device_type: str
    dtype: torch.dtype | None

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device_type, self.dtype)

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]


def resolve_amp(name: str, device: torch.device | str) -> Amp:
    """The precision `name` (auto, fp32, bf16, fp16) on `device`.

    auto: bf16 on CUDA GPUs that support it, fp16 on other CUDA GPUs, fp32 on the CPU and any other
    device. An unknown name is a ConfigError naming the choices.
    """
    device = torch.device(device)
    if name == "auto":
        if device.type == "cuda":
            name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            name = "fp32"
    if name not in _DTYPES:
        raise ConfigError(f"unknown precision {name!r}; choose one of {', '.join(PRECISIONS)}")
    return Amp(device.type, _DTYPES[name])


def resolve_device(name: str | torch.device, dist_info: DistInfo | None = None) -> torch.device:
    """auto: the first CUDA GPU when there is one, else the CPU; or a device name (cpu, cuda, cuda:N, ...).

    With `dist_info` (a training process of a torchrun job, see DistInfo), a bare cuda or auto means
    this process's GPU, cuda:LOCAL_RANK. A GPU asked for but absent is a ConfigError.
    """
    text = str(name)
    if text == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        text = "cuda"
    try:
        dev = torch.device(text)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {text!r}: use auto, cpu, cuda or cuda:N") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {text!r} was asked for but no CUDA GPU is available; use --device auto or cpu "
                "(device: auto in a recipe)"
            )
        if dev.index is None and dist_info is not None:
            dev = torch.device("cuda", dist_info.local_rank)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {str(dev)!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return dev


def synchronize(device: torch.device | str) -> None:
    """Wait for queued kernels, so wall-clock timings measure the work and not just its launch."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _wrapper_chain(model: nn.Module) -> list[nn.Module]:
    """`model`, the module it wraps, and so on down to the bare model (the last): DDP holds it as
    `.module`, torch.compile as `._orig_mod`, in any order and depth."""
    chain = [model]
    while True:
        m = chain[-1]
        if isinstance(m, nn.parallel.DistributedDataParallel):
            chain.append(m.module)
        elif hasattr(m, "_orig_mod"):
            chain.append(m._orig_mod)
        else:
            return chain


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare model inside DDP (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    return _wrapper_chain(model)[-1]


def wraps_ddp(model: nn.Module) -> bool:
    """True for DDP(model), compile(DDP(model)) and the like; `no_sync()` reaches DDP through them."""
    return any(isinstance(m, nn.parallel.DistributedDataParallel) for m in _wrapper_chain(model))


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> torch.Tensor:
    """How many rows of `logits` (B, classes) have their target among the k highest, for each k in `ks`.

    A k above the number of classes counts every class (a hit for every row). Returns an int64 tensor
    of len(ks) counts on the logits' device (no host sync). Among tied logits, torch.topk decides
    which ones are in the top k.
    """
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hit = top.eq(targets[:, None])
    return torch.stack([hit[:, :k].sum() for k in ks])


def init_distributed(device: str) -> DistInfo:
    """Join the torchrun job described by the environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*).

    NCCL on CUDA, gloo on CPU. A plain `python -m pss train` is a one-process job.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(minutes=30))
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def agree(dist_info: DistInfo, error: BaseException | None) -> None:
    """Raise on every rank if any rank failed a rank-local check (so no rank waits forever)."""
    if not dist_info.enabled:
        if error is not None:
            raise error
        return
    errors: list[Any] = [None] * dist_info.world_size
    dist.all_gather_object(errors, None if error is None else (type(error).__name__, str(error)))
    for e in errors:
        if e is not None:
            if error is not None:
                raise error
            raise PssError(f"another process failed: {e[1]}")


def seed_everything(seed: int) -> None:
    """Seed python `random`, numpy and torch (every device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def to_device(batch: Any, device: torch.device) -> Any:
    """A batch (tensor, or list / tuple / dict of them) on `device` (non-blocking)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch
