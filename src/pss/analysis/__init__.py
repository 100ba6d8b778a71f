"""Analysis: the dynamic-inference sweep, patch and schedule pictures, run reports.

    from pss.analysis.sweep import sweep_checkpoints, write_sweep
    from pss.analysis.report import write_report

FLOP counting lives in `pss.flops` (the speed benchmark and the compute budget use it too), and the
`pss demo` and multi-run study orchestration in `pss.demo` / `pss.study`. Plots use matplotlib's
object-oriented `Figure` (Agg canvas), never pyplot, so they work headless and do not touch global state.
"""
