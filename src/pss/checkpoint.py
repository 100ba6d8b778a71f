"""Checkpoints: atomic saving, weights-only loading, exact-resume state, safetensors export.

Everything in a pss checkpoint is a tensor, number, string, None, or a list / dict of those, so it
loads with `torch.load(path, weights_only=True)`: loading never runs pickled code from the file.

A training checkpoint (`checkpoint-last.pt`, `training_checkpoint`) is a dict with `format:
"pss-checkpoint"`, the bare model's state dict, optimizer / scheduler / scaler / EMA states, every
process's RNG state, the run's progress, its resolved config and class names (the fields:
docs/run-folder.md); `checkpoint-best.pt` leaves out what only resuming needs, and `model.safetensors`
holds the best model's weights only, with the config as JSON in its metadata.

All writes go to a temporary file in the target's folder, are fsync'ed, then `os.replace`d over
the target: a crash (even SIGKILL) while saving leaves the previous file intact. SIGINT / SIGTERM
arriving during a write take effect once the file is complete; a full disk is one line naming the
folder and the space needed.

Mapping foreign weights (timm, SimMIM, MAE, BEiT) onto our models for fine-tuning is
`pss.models.convert`; rebuilding a trained model from a run folder is `pss.models.hub.load_model`; RNG
states are `pss.rng`'s, a new peak learning rate on resume `pss.optim.set_peak_lr`'s, the run folder
`pss.runfolder.RunDir`'s (what each file holds: docs/run-folder.md).
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import pickle
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from pss.errors import CheckpointError, OutputError, path_problem
from pss.runtime import unwrap_model

__all__ = [
    "FORMAT",
    "ResumePoint",
    "atomic_save",
    "atomic_write",
    "export_safetensors",
    "fit_problems",
    "check_training_checkpoint",
    "is_training_checkpoint",
    "load_checkpoint",
    "load_safetensors",
    "load_strict",
    "restore_training_state",
    "safetensors_metadata",
    "signals_deferred",
    "training_checkpoint",
]

log = logging.getLogger(__name__)

FORMAT = "pss-checkpoint"
VERSION = 1


# ---------------------------------------------------------------------------------------------
# atomic writes


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None], size: int | None = None,
                 total: int | None = None) -> None:
    """Call `write(f)` on a temp file beside `path`, fsync it, then rename it over `path`.

    The file gets the permissions of a plain `open()` (the user's umask), SIGINT / SIGTERM wait until
    the file is complete (`signals_deferred`), and a full disk is one OutputError naming the folder
    and the space needed (`size`, the bytes being written, and `total`, those of every file the caller
    keeps beside it, when it knows them); the previous file stays intact in every case.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with signals_deferred():
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; logs get 0666 & ~umask
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)  # atomic on POSIX: readers see the old or the new file, never half
        except BaseException as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if _disk_full(e):
                raise _disk_full_error(path, size, total) from None
            raise
        # Make the rename itself durable (the directory entry), so a power loss cannot undo it.
        with contextlib.suppress(OSError):
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)


def atomic_save(obj: Any, path: str | Path, total: int | None = None) -> None:
    """`torch.save(obj, path)`, atomically (`total`: see `atomic_write`)."""
    atomic_write(path, lambda f: torch.save(obj, f), size=_nbytes(obj), total=total)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the block runs, then act on them (once each, in order).

    A Ctrl-C that lands inside `torch.save` would otherwise surface as a RuntimeError from its C++
    writer, or be lost. Only the main thread can install handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    from pss.interrupt import holding_signals

    received: list[int] = []
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda signum, frame: received.append(signum))
    try:
        with holding_signals():  # a stop on a signal waits for the block too (pss.interrupt)
            yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(received):
            handler = previous[sig]
            if callable(handler):
                handler(sig, None)  # e.g. Python's default SIGINT handler raises KeyboardInterrupt
            elif handler == signal.SIG_DFL:
                signal.raise_signal(sig)


_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    with _UMASK_LOCK:  # reading the umask means setting it; put it straight back
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _disk_full(e: BaseException | None) -> bool:
    """True if `e` (or an exception it wraps) says the disk or quota is full; torch.save reports a
    failed write as a RuntimeError ('unexpected pos') wrapping, or merely naming, the OSError."""
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(e) or "Disk quota exceeded" in str(e):
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def _disk_full_error(path: Path, size: int | None, total: int | None = None) -> OutputError:
    free = shutil.disk_usage(path.parent).free
    need = f"about {_mb(size)} free for {path.name}" if size else f"more free space for {path.name}"
    if total:
        need += f" (written beside the previous one), about {_mb(total)} for all the checkpoint files a run keeps"
    return OutputError(
        f"no space left on device in {str(path.parent)!r}: it needs {need} ({_mb(free)} free now); "
        f"free some space and try again (the previous {path.name}, if any, is intact)"
    )


def _mb(n: int) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def run_checkpoint_bytes(ckpt: dict[str, Any]) -> int:
    """About the bytes a run's checkpoint files take, from its `training_checkpoint`: checkpoint-last.pt,
    checkpoint-best.pt (model and EMA weights) and model.safetensors (the model's)."""
    return _nbytes(ckpt) + _nbytes([ckpt.get("model"), ckpt.get("ema")]) + _nbytes(ckpt.get("model"))


def _nbytes(obj: Any) -> int:
    """Bytes of tensor data in `obj` (nested dicts / lists), each storage once: about torch.save's size."""
    seen: dict[int, int] = {}

    def walk(x: Any) -> None:
        if isinstance(x, torch.Tensor):
            st = x.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)

    walk(obj)
    return sum(seen.values())


def remove_stale_temp_files(folder: str | Path) -> None:
    """Delete temp files left by a process killed while saving (`.<name>.<random>.tmp`)."""
    for p in Path(folder).glob(".*.tmp"):
        with contextlib.suppress(OSError):
            p.unlink()


# ---------------------------------------------------------------------------------------------
# training checkpoints


def training_checkpoint(
    *,
    model: nn.Module,
    progress: dict[str, Any],
    config: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    lr_scheduler: Any = None,
    scaler: torch.amp.GradScaler | None = None,
    ema: nn.Module | None = None,
    rng: list[dict[str, Any]] | None = None,
    class_names: list[str] | None = None,
) -> dict[str, Any]:
    """Assemble a checkpoint dict (see the module docstring); leave out optimizer etc. for a 'best' one."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": unwrap_model(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "lr_scheduler": lr_scheduler.state_dict() if lr_scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "ema": unwrap_model(ema).state_dict() if ema is not None else None,
        "rng": rng,
        "progress": dict(progress),
        "config": config,
        "class_names": list(class_names) if class_names is not None else None,
        "torch_version": str(torch.__version__),  # TorchVersion is a str subclass weights-only refuses
    }


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a file with `torch.load(weights_only=True)`; clear CheckpointErrors for the failure cases."""
    path = _readable_file(path)
    if path.suffix == ".safetensors":
        return {"model": load_safetensors(path)}
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        if "global" not in str(e).lower():  # no class was refused: bytes that are no pickle at all
            raise CheckpointError(f"{str(path)!r} is not a readable checkpoint (corrupt, truncated, or not a "
                                  "torch.save file)") from None
        raise CheckpointError(
            f"{str(path)!r} holds pickled Python objects that weights-only loading refuses ({first}); "
            "pss never runs code from a checkpoint: re-save it as a plain state dict (or .safetensors)"
        ) from None
    except Exception as e:  # noqa: BLE001
        # zip errors, truncation, and random bytes read as a legacy pickle trip the weights-only
        # unpickler in many ways (IndexError on an empty stack, AssertionError, struct errors, ...):
        # all of them mean the file is not a checkpoint (weights_only: no code ran)
        raise CheckpointError(f"{str(path)!r} is not a readable checkpoint (corrupt or truncated?): "
                              f"{type(e).__name__}: {e}") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{str(path)!r} holds a {type(obj).__name__}, expected a dict / state dict")
    _check_structure(obj, path)
    return obj


# Bounds on a checkpoint's structure (tensors count as one value each). A pss checkpoint holds a few
# thousand values (state dicts, optimizer state, class names) nested a few levels; the pickle memo lets a
# small file share one list in many places, and every later walk (config checks, class names, messages)
# would expand it, so a file past these bounds is refused as it is read.
MAX_CHECKPOINT_VALUES = 1_000_000
MAX_CHECKPOINT_DEPTH = 32


def _parts(x: Any) -> Any:
    if isinstance(x, dict):
        return [*x.keys(), *x.values()]
    return x if isinstance(x, (list, tuple)) else ()


def _check_structure(obj: dict[str, Any], path: Path) -> None:
    """CheckpointError unless `obj` stays within MAX_CHECKPOINT_VALUES values (shared parts counted in full)
    and MAX_CHECKPOINT_DEPTH levels of nesting (pss.bounds)."""
    from pss.bounds import RecursiveStructure, measure

    try:
        size, depth = measure(obj, _parts, MAX_CHECKPOINT_VALUES)
    except (RecursiveStructure, RecursionError):
        size, depth = 0, MAX_CHECKPOINT_DEPTH + 1
    if depth > MAX_CHECKPOINT_DEPTH:
        raise CheckpointError(f"{str(path)!r} nests its contents over {MAX_CHECKPOINT_DEPTH} levels deep (a checkpoint "
                              "has a few): it is not a checkpoint pss wrote or can read")
    if size > MAX_CHECKPOINT_VALUES:
        raise CheckpointError(f"{str(path)!r} holds over {MAX_CHECKPOINT_VALUES} values once its shared parts are "
                              "counted in full (a checkpoint has a few thousand): it is not a checkpoint pss wrote or "
                              "can read")


def _readable_file(path: str | Path) -> Path:
    """`path` (user-expanded); CheckpointError saying what it is when it is not a file: missing, a folder,
    a device, a pipe (whose read would block)."""
    path = Path(path).expanduser()
    problem = path_problem(path)
    if problem:
        hint = ": give a checkpoint file (.pt, .pth, .bin or .safetensors)" if path.is_dir() else ""
        raise CheckpointError(f"checkpoint {str(path)!r} {problem}{hint}")
    return path


def is_training_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def check_training_checkpoint(ckpt: Any, path: str | Path, resumable: bool = False) -> dict[str, Any]:
    """`ckpt` if it is a pss training checkpoint of the shape pss writes, else CheckpointError naming what
    is wrong, before anything is built from it: its format, the `model` state dict, the `config` it was
    trained with, its `progress` (step counts: non-negative integers) and, to resume, an optimizer state."""
    where = repr(str(path))
    if not is_training_checkpoint(ckpt):
        raise CheckpointError(f"{where} is not a pss checkpoint; to fine-tune from it use `pss train --init`")
    for key in ("model", "config") + (("progress",) if resumable else ()):
        if not isinstance(ckpt.get(key), dict):
            raise CheckpointError(f"{where} has no {key!r} (a dict), which every checkpoint pss train writes holds: "
                                  "a damaged or edited file; use another checkpoint of the run, or its weights "
                                  "with `pss train --init`")
    progress = ckpt.get("progress") if isinstance(ckpt.get("progress"), dict) else {}
    for key in ("step", "steps_per_epoch", "total_steps"):
        v = progress.get(key, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise CheckpointError(f"{where}: progress.{key} is {v!r}, not a step count (an integer >= 0): a damaged "
                                  "or edited checkpoint; resume from another one, or start the run again")
    if resumable and ckpt.get("optimizer") is None:
        raise CheckpointError(f"{where} is not a resumable pss checkpoint (no optimizer state); use checkpoint-last.pt")
    return ckpt


class ResumePoint(os.PathLike):
    """A training checkpoint to resume from, as `pss.resolve.resolve_config` found and checked it: its path
    (a PathLike: `Path(point)` is the file) and its content, handed over once (`take`), so that a resume
    reads the file once and holds it no longer than the run's set-up needs it; `config`: the config it was
    trained with (kept after `take`)."""

    def __init__(self, path: str | Path, checkpoint: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self._checkpoint = checkpoint
        self.config: dict[str, Any] | None = checkpoint.get("config") if checkpoint is not None else None

    def take(self) -> dict[str, Any] | None:
        """The checkpoint read (None once taken, or when none was read)."""
        ckpt, self._checkpoint = self._checkpoint, None
        return ckpt

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"ResumePoint({str(self.path)!r})"


def restore_training_state(
    ckpt: dict[str, Any],
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    lr_scheduler: Any = None,
    scaler: torch.amp.GradScaler | None = None,
    ema: nn.Module | None = None,
) -> None:
    """Load model / optimizer / scheduler / scaler / EMA states from a training checkpoint, in place.
    RNG states are restored separately (`pss.rng.set_rng_state`), at the point where the loop resumes; a
    new peak learning rate is `pss.optim.set_peak_lr`'s."""
    if not is_training_checkpoint(ckpt):
        raise CheckpointError("not a pss training checkpoint (no 'format: pss-checkpoint'); use --init to load weights")
    load_strict(unwrap_model(model), ckpt["model"], "model")
    if optimizer is not None:
        if ckpt.get("optimizer") is None:
            raise CheckpointError("the checkpoint has no optimizer state (a 'best' checkpoint?); resume from checkpoint-last.pt")
        optimizer.load_state_dict(ckpt["optimizer"])
    if lr_scheduler is not None and ckpt.get("lr_scheduler") is not None:
        lr_scheduler.load_state_dict(ckpt["lr_scheduler"])
    if scaler is not None and scaler.is_enabled() and ckpt.get("scaler") is not None:
        scaler.load_state_dict(ckpt["scaler"])
    if ema is not None:
        if ckpt.get("ema") is None:
            log.warning("the checkpoint has no EMA weights: the EMA restarts from the current model")
            unwrap_model(ema).load_state_dict(unwrap_model(model).state_dict())
        else:
            load_strict(unwrap_model(ema), ckpt["ema"], "ema")


def load_strict(model: nn.Module, sd: dict[str, torch.Tensor], what: str) -> None:
    """Load `sd` into `model`, refusing (CheckpointError naming keys and shapes) anything that does not fit."""
    problems = fit_problems(model, sd)
    if problems:
        raise CheckpointError(f"the checkpoint's {what} weights do not fit the configured model: {problems}")
    model.load_state_dict(sd, strict=True)


def fit_problems(model: nn.Module, sd: dict[str, torch.Tensor], allow_missing: tuple[str, ...] = ()) -> str:
    """'' if `sd` fits `model` exactly, else a short description naming keys and shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd and not k.startswith(allow_missing)]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in sd if k in own and sd[k].shape != own[k].shape]
    parts = []
    if shapes:
        parts.append("shape mismatch " + "; ".join(first_items(shapes)))
    if missing:
        parts.append("missing keys " + ", ".join(first_items(missing)))
    if unexpected:
        parts.append("unexpected keys " + ", ".join(first_items(unexpected)))
    return "; ".join(parts)


def first_items(items: list[str], n: int = 6) -> list[str]:
    """The first `n` items, and how many more there are: for messages that name keys."""
    return items[:n] + [f"... ({len(items) - n} more)"] if len(items) > n else items


# ---------------------------------------------------------------------------------------------
# safetensors


def export_safetensors(state_dict: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, Any] | None = None) -> None:
    """Write a weights-only .safetensors file atomically; `metadata` values are stored as JSON strings."""
    from safetensors.torch import save

    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    meta = {"format": "pt", **{k: json.dumps(v) for k, v in (metadata or {}).items()}}
    data = save(tensors, metadata=meta)
    atomic_write(path, lambda f: f.write(data), size=len(data))


@contextlib.contextmanager
def _safetensors_errors(path: Path) -> Iterator[None]:
    """Every way the safetensors reader refuses a file (truncated, a header size past its limit, bad JSON)
    as one CheckpointError naming it: the one reading path of weights (`--init`) and metadata (sweep, viz)."""
    from safetensors import SafetensorError

    try:
        yield
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{str(path)!r} is not a readable .safetensors file: {e}") from None


def load_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a .safetensors file; CheckpointError when it is not one."""
    from safetensors.torch import load_file

    path = _readable_file(path)
    with _safetensors_errors(path):
        return load_file(str(path))


def safetensors_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of a .safetensors file, its JSON values decoded (pss stores its config so); CheckpointError
    when it is not a readable .safetensors file, or its metadata is past the bounds of a checkpoint's."""
    from safetensors import safe_open

    path = _readable_file(path)
    with _safetensors_errors(path), safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    out = {}
    for k, v in meta.items():
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
        except RecursionError:  # nested past Python's stack
            raise CheckpointError(f"{str(path)!r} nests its metadata {k!r} past any checkpoint's depth: it is not "
                                  "a file pss wrote or can read") from None
    _check_structure(out, path)
    return out
