"""Facts recorded with every run and benchmark: device, library versions, git commit."""
from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import timm
import torch


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    n = torch.get_num_threads()
    return f"cpu ({platform.processor() or platform.machine()}, {n} thread{'' if n == 1 else 's'})"


def git_commit() -> str | None:
    """Short commit of the pss checkout, or None when pss is not run from a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def run_info(device: torch.device | str) -> dict:
    """{"device", "torch", "timm", "commit"} for summaries and benchmark records."""
    return {"device": device_name(device), "torch": torch.__version__, "timm": timm.__version__, "commit": git_commit()}
