"""Compute budgets: solve a keep-ratio schedule so that a run costs a given share of the full-token run.

    budget_plan = plan(cfg, model, steps_per_epoch)          # a run's and `pss schedule --budget`'s one entry
    budget_plan.schedule, budget_plan.predicted_cost         # e.g. cyclic(low=0.31, high=1.0), 0.5996

    cost = FlopCost.for_model(model)                          # or TableCost.from_file("speed.json", ...)
    solve_budget(schedule, 0.6, cost, steps_per_epoch, total_steps)   # the solver alone

`budget: 0.6` in a recipe means "this run may cost 0.6 of the same run at keep ratio 1.0". The cost of
a run is the mean, over its steps, of the relative cost c(rho) of one training step at that step's
keep ratio (c(1.0) = 1). pss solves the schedule's one free parameter (`FREE_PARAMETER`: cyclic `low`,
linear / cosine `start`, fixed `rho`), keeping everything else (warm-up and cool-down at rho = 1.0, the
grid, `high` / `end`), and takes the largest value whose predicted cost does not exceed the budget.

Cost models (`budget_cost` in a recipe, parsed once into a pss.budget_spec.CostSpec; `cost_model` builds it):
  * `flops` (default): FLOPs of a training step (forward + backward) of the actual model, counted with
    torch.utils.flop_counter. The matmul FLOPs of a ViT are exactly a quadratic in the number of tokens
    (linear layers scale with it, attention with its square, the patch embedding and head not at all),
    so three counts give the cost of every keep ratio.
  * a `pss bench speed --json` file: measured step time per keep ratio (`relative_time`), so the budget
    means wall-clock on that machine.
  * `measured`: wall-clock with the data loader, max(model step, data per batch) where the loader runs
    beside the model, their sum where it runs in the training process (pss.preflight.MeasuredCost):
    measured in the run before it trains, or `measured:SPEED.json,DATA.json` (pss bench speed / data). Keep ratios between measured ones are interpolated linearly; a
    schedule that needs a keep ratio outside the table is refused.

The equal-time baseline (pss.equal_time: `equal_time_overrides`) is the other half of an honest comparison:
the same full-token recipe with its epochs (and LR warm-up) scaled to the PSS run's cost, so its LR schedule
decays fully over the shorter run. That cost, against the full run (the recipe's epochs at keep ratio
1.0), comes from one place, `pss.equal_time.cost_vs_full`: every harness, the demo and `pss report` use it
(under tokens for epochs a run's own `budget` is the per-run share of the longer run, not its cost against
the full run).

Tokens for epochs (`budget_epochs`: more epochs at fewer tokens for the same budget) resolves a config
before it is planned: pss.tokens_for_epochs.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pss.budget_spec import FREE_PARAMETER, CostSpec, check_budget, resolve_lever
from pss.errors import ConfigError
from pss.resolution import ResolutionSchedule, joint_counts, model_geometry
from pss.schedule import FixedSchedule, Schedule
from pss.select import num_kept
from pss.tokens_for_epochs import blame_budget_epochs

__all__ = [
    "BudgetPlan",
    "FlopCost",
    "TableCost",
    "BudgetFloorError",
    "cost_model",
    "plan",
    "plan_budget",
    "predicted_cost",
    "solve_budget",
    "solve_resolution",
]

# Free parameters are solved to this many decimals (rounded down, so the budget is never exceeded).
_DECIMALS = 4
_TOL = 1e-9
UNSPENT = 0.05  # BudgetPlan.unspent warns when a grid leaves more than this share of the budget unspent


# ---------------------------------------------------------------------------------------------
# cost models: keep ratio -> cost of one training step relative to keep ratio 1.0


@dataclass(frozen=True)
class FlopCost:
    """Relative training-step FLOPs of one model: c(rho, side) = F(N(side), K) / F(N, N), where N(side) =
    (side / patch)^2 patches go into the patch embedding and K = K(N(side), rho) of them through the
    blocks. F(n, K) = a + e (n - N) + b K + c K^2 per image: the blocks are a quadratic in the tokens they
    run (linear layers scale with K, attention with K^2), the patch embedding is linear in the patches it
    embeds (`embed` = e), the head is constant."""

    num_patches: int
    coeffs: tuple[float, float, float]  # F(N, K) = a + b K + c K^2 (K = kept patch tokens), per image, at full side
    model: str = ""
    name: str = "flops"
    embed: float = 0.0  # FLOPs per embedded patch (forward + backward), for sides other than the full one
    img_size: int | None = None  # the model's side and patch, for costs at other sides
    patch_size: int | None = None

    def flops(self, k: int, n: int | None = None) -> float:
        a, b, c = self.coeffs
        return a + self.embed * ((self.num_patches if n is None else n) - self.num_patches) + b * k + c * k * k

    def patches(self, side: int | None) -> int:
        """Patches of the grid at `side` pixels (None: the model's side)."""
        if side is None or side == self.img_size:
            return self.num_patches
        if self.patch_size is None:
            raise ConfigError("this cost model knows only the model's own side; count FLOPs with FlopCost.for_model")
        return (side // self.patch_size) ** 2

    def __call__(self, keep_ratio: float, side: int | None = None) -> float:
        n = self.patches(side)
        return self.flops(num_kept(n, keep_ratio), n) / self.flops(self.num_patches)

    def check(self, keep_ratios: set[float], gridded: bool) -> None:
        """Every keep ratio is covered (the FLOP model has no gaps)."""

    @classmethod
    def for_model(cls, model: Any, name: str = "") -> FlopCost:
        """Count one image's training-step FLOPs at three token counts and fit the quadratic exactly; where
        the model runs smaller grids (pss.models: every PssVisionTransformer), one more count at half the
        side gives the patch embedding's share."""
        import torch

        from pss.control import samplers
        from pss.flops import count_flops, example_input

        n = model.patch_embed.num_patches
        if not samplers(model):
            raise ConfigError(f"{type(model).__name__} has no PatchSampler: build it with pss or call pss.attach(model)")
        ks = sorted({n, max(1, n // 2), 1})
        was_training = model.training
        model.train()
        x = example_input(model, batch_size=1)
        try:
            ys = [float(count_flops(model, x, k / n, backward=True)) for k in ks]
            if len(ks) < 3:  # a model with one or two patches: the cost is linear (or constant) in K
                coeffs = (ys[0], (ys[-1] - ys[0]) / max(ks[-1] - ks[0], 1), 0.0)
            else:
                coeffs = tuple(float(v) for v in torch.linalg.solve(
                    torch.tensor([[1.0, k, k * k] for k in ks], dtype=torch.float64), torch.tensor(ys, dtype=torch.float64)
                ))
            embed, img, patch = 0.0, None, None
            geometry = model_geometry(model)
            if geometry is not None and geometry[0] // geometry[1] >= 2:
                img, patch = geometry
                half = patch * (img // patch // 2)
                m = (half // patch) ** 2
                y = float(count_flops(model, x[..., :half, :half].contiguous(), 1.0, backward=True))
                a, b, c = coeffs
                embed = (a + b * m + c * m * m - y) / (n - m)  # F(m, m) = a + e (m - n) + b m + c m^2
        finally:
            model.train(was_training)
        return cls(n, coeffs, name, embed=embed, img_size=img, patch_size=patch)  # type: ignore[arg-type]


@dataclass(frozen=True)
class TableCost:
    """Measured relative step time per keep ratio (a `pss bench speed --json` file)."""

    table: tuple[tuple[float, float], ...]  # (keep ratio, time / time at 1.0), ascending keep ratio
    source: str = ""
    name: str = "table"

    @property
    def min_keep_ratio(self) -> float:
        """The lowest keep ratio measured: below it the table has no cost (`solve_budget` stops there)."""
        return self.table[0][0]

    def __call__(self, keep_ratio: float) -> float:
        pts = self.table
        for r, c in pts:
            if abs(r - keep_ratio) < 1e-6:
                return c
        if not pts[0][0] <= keep_ratio <= pts[-1][0]:
            raise ConfigError(self._missing([keep_ratio]))
        for (r0, c0), (r1, c1) in zip(pts, pts[1:]):
            if r0 <= keep_ratio <= r1:
                return c0 + (c1 - c0) * (keep_ratio - r0) / (r1 - r0)
        raise ConfigError(self._missing([keep_ratio]))  # unreachable: the range was checked

    def check(self, keep_ratios: set[float], gridded: bool) -> None:
        """Refuse a schedule that needs keep ratios the table does not hold (a gridded schedule: each of
        its few keep ratios measured) or does not cover (no grid: interpolated between measured ones)."""
        have = [r for r, _ in self.table]
        if gridded:
            missing = sorted(r for r in keep_ratios if not any(abs(r - h) < 1e-6 for h in have))
        else:
            missing = sorted(r for r in keep_ratios if not have[0] - 1e-9 <= r <= have[-1] + 1e-9)
        if missing:
            raise ConfigError(self._missing(missing))

    def _missing(self, missing: list[float]) -> str:
        have = ", ".join(f"{r:g}" for r, _ in self.table)
        want = ", ".join(f"{r:g}" for r in missing)
        return (f"cost file {self.source!r} has no step time for keep ratio(s) {want} (it has {have}); "
                f"re-run pss bench speed with --keep covering them, or use budget_cost: flops")

    @classmethod
    def from_file(cls, path: str | Path, model: str | None = None, img_size: int | None = None,
                  model_kwargs: dict[str, Any] | None = None) -> TableCost:
        """Read a speed report; refuse one of another model (name, image size, or model options)."""
        path = Path(path).expanduser()
        hint = "write one with: pss bench speed --model NAME --json FILE, or use budget_cost: flops"
        if not path.is_file():
            raise ConfigError(f"budget_cost file {str(path)!r} not found; {hint}")
        try:
            report = json.loads(path.read_text())
            rows = [(float(r["keep_ratio"]), float(r["relative_time"])) for r in report["results"]]
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"budget_cost file {str(path)!r} is not a pss bench speed report ({e}); {hint}") from None
        if model is not None and report.get("model") != model:
            raise ConfigError(
                f"budget_cost file {str(path)!r} was measured on {report.get('model')!r}, this run trains {model!r}; "
                f"measure this model: pss bench speed --model {model} --json FILE"
            )
        if img_size is not None and report.get("img_size") not in (None, img_size):
            raise ConfigError(
                f"budget_cost file {str(path)!r} was measured at {report.get('img_size')} px, this run uses {img_size} px; "
                f"measure with pss bench speed --img-size {img_size}"
            )
        if model_kwargs is not None and "model_kwargs" in report:
            recorded = report["model_kwargs"] or {}
            differ = sorted(k for k in set(recorded) | set(model_kwargs)
                            if k in _COST_KWARGS and recorded.get(k) != model_kwargs.get(k))
            if differ:
                raise ConfigError(
                    f"budget_cost file {str(path)!r} was measured with other model options ({', '.join(differ)}: "
                    f"{ {k: recorded.get(k) for k in differ} } vs { {k: model_kwargs.get(k) for k in differ} }); "
                    "measure this model with pss bench speed --set KEY=VALUE ..."
                )
        bad = [f"{t!r} at keep ratio {r:g}" for r, t in rows if not (math.isfinite(t) and t > 0) or not 0 < r <= 1]
        if bad:
            raise ConfigError(f"budget_cost file {str(path)!r} holds relative times that are no step time "
                              f"({', '.join(bad[:3])}): each must be a finite number > 0, at a keep ratio in (0, 1]; {hint}")
        rows = sorted(dict(rows).items())
        if not rows or abs(rows[-1][0] - 1.0) > 1e-6:
            raise ConfigError(f"budget_cost file {str(path)!r} has no time at keep ratio 1.0, the reference; {hint}")
        return cls(tuple(rows), str(path))


# model options that change a step's cost (a cost table measured with others is refused)
_COST_KWARGS = ("depth", "embed_dim", "num_heads", "mlp_ratio", "pos_embed", "reg_tokens", "class_token", "patch_size")


# ---------------------------------------------------------------------------------------------
# the solver


def predicted_cost(schedule: Schedule, cost: Callable[..., float], steps_per_epoch: int, total_steps: int,
                   resolution: ResolutionSchedule | None = None) -> float:
    """Mean relative step cost of a run of `total_steps` steps under `schedule` (and, where given, the
    `resolution` schedule's side per epoch: the cost model must then know sides, as FlopCost does)."""
    if resolution is None:
        counts = schedule.counts(steps_per_epoch, total_steps)
        return math.fsum(n * cost(r) for r, n in counts.items()) / total_steps
    img, patch = _sides_of(cost)
    return math.fsum(n * cost(r, side) for side, counts in joint_counts(schedule, resolution, steps_per_epoch,
                                                                        total_steps, img, patch).items()
                     for r, n in counts.items()) / total_steps


def _sides_of(cost: Any) -> tuple[int, int]:
    img, patch = getattr(cost, "img_size", None), getattr(cost, "patch_size", None)
    if img is None or patch is None:
        raise ConfigError(f"a resolution schedule's cost needs budget_cost: flops (the {getattr(cost, 'name', 'given')} "
                          "cost model has no step cost at other sides); set budget_cost: flops")
    return img, patch


@dataclass(frozen=True)
class BudgetPlan:
    """What `solve_budget` found: the schedule to train with and its predicted cost."""

    schedule: Schedule
    budget: float
    predicted_cost: float
    parameter: str
    value: float
    cost_model: str
    recipe_value: float | None = None  # the parameter's value in the recipe, which `value` replaces
    ungridded_cost: float | None = None  # what the schedule spends with no grid, where the grid leaves much unspent
    resolution: ResolutionSchedule | None = None  # the run's resolution schedule (its start solved where lever says)
    lever: str = "drop"  # what the budget solved: drop (keep ratio), resize (resolution start) or both
    recipe_start: float | None = None  # the recipe's resolution start, where the budget solved it
    # the run's epochs over the recipe's, where tokens for epochs made the run longer (`plan` sets it): the
    # budget above is then each epoch's, and the cost against the recipe's full run is predicted_cost x this
    epochs_factor: float = 1.0
    # the cost model it was solved on (`plan` keeps it: a run's realised cost is counted on it); not compared
    cost: Callable[..., float] | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"budget": self.budget, "cost_model": self.cost_model, "predicted_cost": self.predicted_cost,
                "parameter": self.parameter, "value": self.value, "recipe_value": self.recipe_value,
                "schedule": self.schedule.to_dict(), "ungridded_cost": self.ungridded_cost, "lever": self.lever,
                "resolution": None if self.resolution is None else self.resolution.to_dict(),
                "recipe_start": self.recipe_start}

    def unspent(self) -> str | None:
        """A warning where the grid's rounding leaves more than UNSPENT of the budget unspent (e.g. a fixed
        keep ratio on a 0.1 grid whose next value costs just over the budget), naming the fix."""
        if self.ungridded_cost is None:
            return None
        return (f"budget {self.budget:g}: on the {self.schedule.grid:g} grid the {self.schedule.name} schedule spends "
                f"only {self.predicted_cost:.3f} ({1 - self.predicted_cost / self.budget:.0%} unspent; the next grid value "
                f"costs more than the budget); with no grid (grid: 0) it spends {self.ungridded_cost:.3f}")

    def describe(self) -> str:
        """What the budget did, in words: the solved parameter(s) next to the recipe's."""
        solved = []
        if self.lever in ("resize", "both") and self.resolution is not None:
            solved.append(f"resolution ({self.resolution.name}) start = {self.resolution.start:g} of img_size solved "
                          f"(the recipe's start: {self.recipe_start:g})")
        if self.lever in ("drop", "both"):
            solved.append(f"{self.schedule.name} {self.parameter} = {self.value:g} solved (the recipe's {self.parameter}: "
                          f"{self.recipe_value:g})")
        budget, cost = self.headline()
        return f"{budget}: {' and '.join(solved)}, {cost} (cost model: {self.cost_model})"

    def headline(self) -> tuple[str, str]:
        """(the budget, the predicted cost) in words. Under tokens for epochs the solved budget is each epoch's
        of the longer run, so the cost is also said against the recipe's full run, the figure a user asked for."""
        cost = f"predicted cost {self.predicted_cost:.4f} of the full-token run"
        if math.isclose(self.epochs_factor, 1.0):
            return f"budget {self.budget:g}", cost
        return (f"each epoch's budget {self.budget:g}", f"predicted cost {self.predicted_cost:.4f} of a full-token epoch, "
                f"{self.predicted_cost * self.epochs_factor:.4f} of the recipe's full run")


def _with(schedule: Schedule, param: str, value: float) -> Schedule:
    return dataclasses.replace(schedule, **{param: value})


def _reachable(schedule: Schedule, budget: float, cost: Callable[[float], float], steps_per_epoch: int,
               total_steps: int) -> str:
    """The fix for an unreachable budget: the first schedule (this one, then fixed) and grid (this one, then
    finer) whose floor is within the budget, keeping the warm-up / cool-down; or what else must give."""
    shapes = [schedule] + ([] if isinstance(schedule, FixedSchedule) else [
        FixedSchedule(rho=1.0, grid=schedule.grid, warmup_epochs=schedule.warmup_epochs,
                      cooldown_epochs=schedule.cooldown_epochs)])
    for grid in dict.fromkeys([schedule.grid, 0.1, 0.05, None]):
        if schedule.grid is not None and grid is not None and grid > schedule.grid:
            continue
        for shape in shapes:
            lowest = 10.0 ** -_DECIMALS if grid is not None else max(10.0 ** -_DECIMALS, getattr(cost, "min_keep_ratio", 0))
            candidate = _with(dataclasses.replace(shape, grid=grid), FREE_PARAMETER[shape.name], lowest)
            try:
                floor = predicted_cost(candidate, cost, steps_per_epoch, total_steps)
            except ConfigError:  # keep ratios a cost table does not hold: not a way out
                continue
            if floor <= budget + _TOL and (shape is not schedule or grid != schedule.grid):
                return (f"{shape.name} with grid {grid if grid is not None else 'off (0)'} can reach it (floor "
                        f"{math.ceil(floor * 1000) / 1000:.3f}); or raise the budget")
    return "raise the budget or shorten warm-up/cool-down (no schedule or grid reaches it with these)"


class BudgetFloorError(ConfigError):
    """`solve_budget`'s refusal of a budget below what the schedule can reach; `floor`: the smallest it can."""

    def __init__(self, message: str, floor: float) -> None:
        super().__init__(message)
        self.floor = floor


def _largest_within(run_cost: Callable[[float], float], lo: float, hi: float, budget: float) -> float:
    """The largest value in [lo, hi] (to _DECIMALS, rounded down) whose run cost is within the budget, by
    bisection: the cost never falls as the value grows, and run_cost(lo) is within the budget."""
    if run_cost(hi) <= budget + _TOL:
        return hi
    a, b = lo, hi  # run_cost(a) <= budget < run_cost(b)
    while b - a > 10.0 ** -(_DECIMALS + 1):
        mid = (a + b) / 2
        if run_cost(mid) <= budget + _TOL:
            a = mid
        else:
            b = mid
    return max(lo, math.floor(a * 10**_DECIMALS) / 10**_DECIMALS)


def solve_budget(
    schedule: Schedule,
    budget: float,
    cost: Callable[..., float],
    steps_per_epoch: int,
    total_steps: int,
    resolution: ResolutionSchedule | None = None,
) -> BudgetPlan:
    """The schedule with its free parameter set as high as the budget allows (see the module docstring);
    with `resolution`, the run's side per epoch (fixed here) counts in every step's cost.

    Raises ConfigError when even the smallest value of the parameter costs more than the budget
    (warm-up / cool-down at rho = 1.0 and the grid set a floor), naming the smallest possible budget.
    """
    check_budget(budget, schedule)
    schedule.check_run(steps_per_epoch, total_steps)
    param = FREE_PARAMETER[schedule.name]
    # Largest sensible value: cyclic low <= high; the others up to 1.0 (everything at rho = 1.0).
    hi = min(float(getattr(schedule, "high", 1.0)), 1.0)
    lo = 10.0 ** -_DECIMALS  # the smallest value; the grid or one kept token sets the real floor
    if schedule.grid is None:  # unrounded, the parameter is the lowest keep ratio run: one the cost model covers
        lo = max(lo, getattr(cost, "min_keep_ratio", lo))

    def run_cost(value: float) -> float:
        return predicted_cost(_with(schedule, param, value), cost, steps_per_epoch, total_steps, resolution)

    floor = run_cost(lo)
    if floor > budget + _TOL:
        raise BudgetFloorError(
            f"budget {budget:g} is below what this schedule can reach: the smallest possible is "
            f"{math.ceil(floor * 1000) / 1000:.3f} ({schedule.name} with {param} -> 0 over {total_steps} steps, warm-up/cool-down "
            f"{schedule.warmup_epochs:g}/{schedule.cooldown_epochs:g} epochs at keep ratio 1.0, grid {schedule.grid}); "
            f"{_reachable(schedule, budget, cost, steps_per_epoch, total_steps)}", floor)
    best = _largest_within(run_cost, lo, hi, budget)
    solved = _with(schedule, param, best)
    values = set(solved.counts(steps_per_epoch, total_steps))
    getattr(cost, "check", lambda *_: None)(values, solved.grid is not None)
    spent, ungridded = run_cost(best), None
    if solved.grid is not None and spent < budget * (1 - UNSPENT):
        try:
            fine = solve_budget(dataclasses.replace(schedule, grid=None), budget, cost, steps_per_epoch, total_steps,
                                resolution)
        except ConfigError:  # e.g. a cost table that does not cover the values between its rows
            fine = None
        ungridded = fine.predicted_cost if fine is not None and fine.predicted_cost > spent + _TOL else None
    return BudgetPlan(solved, float(budget), spent, param, best, getattr(cost, "name", "custom"),
                      recipe_value=float(getattr(schedule, param)), ungridded_cost=ungridded, resolution=resolution)


def solve_resolution(resolution: ResolutionSchedule, schedule: Schedule, budget: float, cost: Callable[..., float],
                     steps_per_epoch: int, total_steps: int) -> BudgetPlan:
    """The resolution schedule with its `start` set as high as the budget allows, beside `schedule` (the
    keep ratio per step, unchanged). Raises ConfigError, naming what can reach it, when even one patch
    per side until `full_from` costs more than the budget."""
    check_budget(budget, schedule, "resize")
    schedule.check_run(steps_per_epoch, total_steps)
    img, patch = _sides_of(cost)
    lo = patch / img  # one patch per side: the smallest start

    def run_cost(start: float) -> float:
        return predicted_cost(schedule, cost, steps_per_epoch, total_steps, resolution.with_start(start))

    floor = run_cost(lo)
    if floor > budget + _TOL:
        shapes = [n for n in ("step",) if n != resolution.name
                  and predicted_cost(schedule, cost, steps_per_epoch, total_steps,
                                     dataclasses.replace(resolution, name=n).with_start(lo)) <= budget + _TOL]
        fix = ("the step shape reaches it (resolution.name: step)" if shapes else
               "lower resolution.full_from (fewer epochs at full side), add the drop lever (budget_lever: both with a "
               "keep-ratio schedule), or raise the budget")
        raise BudgetFloorError(
            f"budget {budget:g} is below what the {resolution.name} resolution schedule can reach: the smallest "
            f"possible is {math.ceil(floor * 1000) / 1000:.3f} (start at one patch, {patch} px, full side from "
            f"{resolution.full_from:g} of the epochs); {fix}", floor)
    best = _largest_within(run_cost, lo, 1.0, budget)
    solved = resolution.with_start(best)
    param = FREE_PARAMETER.get(schedule.name, "rho")
    return BudgetPlan(schedule, float(budget), run_cost(best), param, float(getattr(schedule, param, 1.0)),
                      getattr(cost, "name", "custom"), recipe_value=float(getattr(schedule, param, 1.0)),
                      resolution=solved, lever="resize", recipe_start=resolution.start)


def plan_budget(schedule: Schedule, resolution: ResolutionSchedule | None, lever: str, budget: float,
                cost: Callable[..., float], steps_per_epoch: int, total_steps: int) -> BudgetPlan:
    """The one entry from a budget to the schedules a run trains with (`lever` as `budget_lever`, auto
    resolved by `resolve_lever`): drop solves the keep-ratio schedule (beside a fixed resolution schedule,
    if any), resize the resolution schedule's start, both first the resolution start for sqrt(budget)
    at every token (the side takes half of the saving, counted in log cost), then the keep ratio for
    the budget beside that side schedule."""
    lever = resolve_lever(lever, schedule, resolution)
    if lever == "drop":
        return solve_budget(schedule, budget, cost, steps_per_epoch, total_steps, resolution)
    if resolution is None:
        raise ConfigError(f"budget_lever {lever} needs a resolution schedule to solve; set resolution: {{name: linear, "
                          "start: 0.5}} or budget_lever: drop")
    if lever == "resize":
        return solve_resolution(resolution, schedule, budget, cost, steps_per_epoch, total_steps)
    check_budget(budget, schedule, "drop")
    full = FixedSchedule(rho=1.0, warmup_epochs=schedule.warmup_epochs, cooldown_epochs=schedule.cooldown_epochs)
    side = solve_resolution(resolution, full, math.sqrt(budget), cost, steps_per_epoch, total_steps)
    plan = solve_budget(schedule, budget, cost, steps_per_epoch, total_steps, side.resolution)
    return dataclasses.replace(plan, lever="both", recipe_start=resolution.start)


def cost_model(spec: CostSpec, model_cfg: Any, model: Any = None, measurements: Any = None) -> Callable[..., float]:
    """The cost model `spec` names (`budget_cost`): FLOPs of `model`; a speed report, checked against the
    recipe's model (`model_cfg`: its name, side and options; None: read unchecked, as `pss schedule` does
    without --model); or measured, wall-clock with the loader, from `measurements` (a
    pss.preflight.Measurements: timed in the run or read from the reports)."""
    if spec.kind == "flops":
        if model is None:
            raise ConfigError("budget_cost: flops counts the FLOPs of the model: give the model (pss schedule --model NAME)")
        return FlopCost.for_model(model, getattr(model_cfg, "name", ""))
    if spec.kind == "measured":
        if measurements is None:
            raise ConfigError(f"budget_cost: {spec} is timed with the run's data loader (pss train --set "
                              f"budget_cost={spec}); here give flops (with a model) or a pss bench speed --json file")
        return measurements.cost_model()  # pss.preflight.MeasuredCost
    if model_cfg is None:
        return TableCost.from_file(spec.speed)
    return TableCost.from_file(spec.speed, model_cfg.name, model_cfg.img_size, model_cfg.kwargs)


def plan(cfg: Any, model: Any, steps_per_epoch: int, measurements: Any = None) -> BudgetPlan | None:
    """The one entry from a recipe's budget to the schedules a run trains with, for `pss train` and `pss
    schedule --budget` alike: None without a budget; else the plan of `plan_budget` on the cost model
    `cfg.budget_cost` names (`cost_model`; `model`: the built model, None where a speed report needs no
    model, and a speed report is then read unchecked), over `cfg.epochs` epochs of `steps_per_epoch` steps, its cost model kept as `plan.cost`.
    `cfg` is resolved (tokens for epochs applied: pss.tokens_for_epochs.apply_budget_epochs); when `budget_epochs` made the run
    longer (its `budget_reference`), a refusal is told in the recipe's numbers (`blame_budget_epochs`)."""
    if cfg.budget is None:
        return None
    cost = cost_model(cfg.budget_cost, cfg.model if model is not None else None, model, measurements)
    try:
        solved = plan_budget(cfg.schedule, cfg.resolution, cfg.budget_lever, cfg.budget, cost, steps_per_epoch,
                             cfg.epochs * steps_per_epoch)
    except ConfigError as e:
        ref = cfg.budget_reference or {}
        if ref.get("epochs_factor", 1) == 1:  # the recipe's own budget: its own problem
            raise
        raise blame_budget_epochs(e, ref["budget"], ref["epochs"], ref["budget_epochs"], cfg.epochs) from None
    factor = float((cfg.budget_reference or {}).get("epochs_factor", 1.0))
    return dataclasses.replace(solved, cost=cost, epochs_factor=factor)
