"""pss: faster Vision Transformer training with a Patch Sampling Schedule.

Importing pss registers its models with timm (`timm.create_model("pss_vit_small_patch16_224")`).
"""
from pss.control import get_keep_ratio, keep_ratio, recording, samplers, set_keep_ratio
from pss.models import attach, build_model
from pss.select import PatchSampler, select_tokens

__version__ = "0.1.0"

__all__ = [
    "PatchSampler",
    "attach",
    "build_model",
    "get_keep_ratio",
    "keep_ratio",
    "recording",
    "samplers",
    "select_tokens",
    "set_keep_ratio",
]
