"""Reaching the Hugging Face hub: find out once, in seconds, whether it answers, and go cache-only if not.

huggingface_hub and datasets retry an unreachable hub for tens of seconds, printing a line per try, before
the error pss turns into one line. Every hub access of pss (timm's pretrained weights, `--data hf:NAME`)
calls `cache_only_when_offline()` first: one TCP connection attempt to the hub (HF_ENDPOINT, default
huggingface.co) with a short timeout; when it fails, HF_HUB_OFFLINE / HF_DATASETS_OFFLINE are set for this
process, so the libraries read their local cache at once and fail fast when it lacks the files.
"""
from __future__ import annotations

import logging
import os
import socket
from urllib.parse import urlparse

log = logging.getLogger("pss")

__all__ = ["cache_only_when_offline", "hub_reachable"]

_checked: dict[str, bool] = {}


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub's host opens within `timeout` seconds (checked once per process)."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)
    key = f"{host}:{port}"
    if key not in _checked:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            _checked[key] = True
        except OSError:
            _checked[key] = False
    return _checked[key]


def cache_only_when_offline() -> bool:
    """Set the hub libraries cache-only for this process when the hub does not answer (said once, in one
    line); True when they are cache-only (already by the user's settings, or now)."""
    flags = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    if any(os.environ.get(f, "").lower() in ("1", "true", "yes", "on") for f in flags):
        return True
    if hub_reachable():
        return False
    for f in flags:
        os.environ[f] = "1"
    try:  # huggingface_hub reads the flag at import: tell an already imported one too
        import huggingface_hub.constants as hc

        hc.HF_HUB_OFFLINE = True
    except (ImportError, AttributeError):
        pass
    log.info("the Hugging Face hub does not answer: using the local cache only (HF_HUB_OFFLINE=1)")
    return True
