"""pss: faster Vision Transformer training with a Patch Sampling Schedule.

Importing pss registers its models with timm (`timm.create_model("pss_vit_small_patch16_224")`).

In your own loop (README, "Use it in your own loop"):

    model = pss.attach(timm.create_model("deit_small_patch16_224"))
    keep = pss.KeepRatioScheduler(model, 0.4, steps_per_epoch, epochs, select="random")  # the recommended recipe
    ... keep.step() after each optimizer step; eval() runs every token unless pss.use_keep_ratio(model, rho)
"""
from pss.control import get_keep_ratio, recording, samplers, set_keep_ratio, use_keep_ratio
from pss.dynamo import compile_friendly
from pss.models import attach, build_model
from pss.schedule import (
    CosineSchedule,
    CyclicSchedule,
    FixedSchedule,
    LinearSchedule,
    Schedule,
    schedule_from_spec,
)
from pss.scheduler import KeepRatioScheduler
from pss.select import PatchSampler, select_tokens

__version__ = "0.1.0"

__all__ = [
    "CosineSchedule",
    "CyclicSchedule",
    "FixedSchedule",
    "KeepRatioScheduler",
    "LinearSchedule",
    "PatchSampler",
    "Schedule",
    "attach",
    "build_model",
    "compile_friendly",
    "get_keep_ratio",
    "recording",
    "samplers",
    "schedule_from_spec",
    "select_tokens",
    "set_keep_ratio",
    "use_keep_ratio",
]
