"""Analysis: FLOP counting, the dynamic-inference sweep, patch and schedule pictures, run reports.

    from pss.analysis import count_flops
    count_flops(model, x, keep_ratio=0.5, backward=True)   # FLOPs of one training step on batch x

Plots use matplotlib's object-oriented `Figure` (Agg canvas), never pyplot, so they work headless
and do not touch global state.
"""
from pss.analysis.flops import count_flops, example_input, flops_per_image

__all__ = ["count_flops", "example_input", "flops_per_image"]
