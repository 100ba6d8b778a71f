"""Analysis library: FLOP counting, the sweep on a tiny model, patch pictures, schedule plots."""
import json

import matplotlib.image as mpimg
import pytest
import torch

import pss
from pss.analysis import sweep as sw
from pss.analysis import viz
from pss.errors import ConfigError
from pss.flops import count_flops, flops_per_image
from pss.schedule import CyclicSchedule, FixedSchedule, LinearSchedule, schedule_from_spec

TINY = dict(depth=2, embed_dim=32, num_heads=2)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return pss.build_model("pss_vit_tiny_patch4_32", 10, **TINY).eval()


@pytest.fixture(scope="module")
def plain_vit():
    """A timm ViT as a user trained it without PSS (no PatchSampler until the analysis attaches one)."""
    import timm

    return timm.create_model("vit_tiny_patch16_224", num_classes=10, img_size=32, patch_size=4, **TINY).eval()


def test_flops_monotone_in_keep_ratio(model):
    rhos = [1.0, 0.8, 0.6, 0.4, 0.2]
    fwd = [flops_per_image(model, r) for r in rhos]
    train = [flops_per_image(model, r, backward=True) for r in rhos]
    assert all(a > b for a, b in zip(fwd, fwd[1:]))
    assert all(a > b for a, b in zip(train, train[1:]))
    # a training step costs about 3 forwards (2 for the backward), minus the patch embedding's input grad
    for f, t in zip(fwd, train):
        assert 2.5 * f < t < 3.1 * f
    # forward FLOPs scale about linearly with the tokens: at 0.2 it is well under half of 1.0
    assert fwd[-1] < 0.35 * fwd[0]
    # the batch total is the per-image count times the batch
    x = torch.randn(3, 3, 32, 32)
    assert count_flops(model, x, 0.6) == 3 * fwd[2]
    # counting leaves the model as it was: rho back at 1.0, no gradients stored
    assert pss.get_keep_ratio(model) == 1.0
    assert all(p.grad is None for p in model.parameters())


def test_flops_plain_model_needs_sampler(plain_vit):
    x = torch.randn(1, 3, 32, 32)
    assert count_flops(plain_vit, x) > 0
    with pytest.raises(TypeError, match="PatchSampler"):
        count_flops(plain_vit, x, 0.5)


def test_sweep_model_rows(model):
    torch.manual_seed(1)
    data = [(torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))) for _ in range(2)]
    rows = sw.sweep_model(model, data, [1.0, 0.5, 0.25], batch_size=4, warmup=1, iters=1)
    assert [r["keep_ratio"] for r in rows] == [1.0, 0.5, 0.25]
    for r in rows:
        assert set(r) >= {"acc1", "acc5", "loss", "images_per_s", "gflops_per_image", "tokens", "num_images"}
        assert 0 <= r["acc1"] <= r["acc5"] <= 100 and r["num_images"] == 8 and r["images_per_s"] > 0
    assert [r["tokens"] for r in rows] == [65, 33, 17]  # CLS + round(rho * 64)
    g = [r["gflops_per_image"] for r in rows]
    assert g[0] > g[1] > g[2] > 0
    # rho = 1.0 evaluation equals a plain forward pass
    logits = torch.cat([model(x) for x, _ in data])
    targets = torch.cat([y for _, y in data])
    expect = torch.nn.functional.cross_entropy(logits, targets).item()
    assert rows[0]["loss"] == pytest.approx(expect, rel=1e-5)


def test_throughput_interleaved_over_models(model):
    """Several models are timed round-robin, one figure per (model, keep ratio); the calls are interleaved."""
    import timm

    big = timm.create_model("pss_vit_tiny_patch4_32", num_classes=10, depth=4, embed_dim=128, num_heads=2).eval()
    order = []
    hooks = [m.register_forward_hook(lambda mod, i, o, tag=tag: order.append((tag, pss.get_keep_ratio(mod))))
             for m, tag in ((model, "small"), (big, "big"))]
    try:
        small_s, big_s = sw.measure_throughput_models([model, big], batch_size=8, keep_ratios=[1.0, 0.25], warmup=0, iters=5)
    finally:
        for h in hooks:
            h.remove()
    assert set(small_s) == set(big_s) == {1.0, 0.25}
    assert all(v > 0 for v in [*small_s.values(), *big_s.values()])
    # one round: every (keep ratio, model) pair once, before the next round starts
    assert order[:4] == [("small", 1.0), ("big", 1.0), ("small", 0.25), ("big", 0.25)] and len(order) == 20
    assert big_s[1.0] < small_s[1.0]  # 4 blocks of width 128 against 2 of width 32
    assert not model.training and not big.training  # modes restored (both were in eval mode)


def test_sweep_attaches_plain_vit(plain_vit):
    rows = sw.sweep_model(plain_vit, None, [1.0, 0.5], batch_size=2, warmup=0, iters=1)
    assert [r["tokens"] for r in rows] == [65, 33] and "acc1" not in rows[0]
    assert pss.samplers(plain_vit)


def test_plot_sweep_and_json(tmp_path):
    rows = [dict(keep_ratio=r, acc1=80 * r, acc5=95.0, loss=1.0, images_per_s=100 / r, gflops_per_image=r,
                 tokens=int(64 * r) + 1) for r in (1.0, 0.5, 0.2)]
    result = {"select": "magnitude", "device": "cpu", "batch_size": 4,
              "checkpoints": [{"name": "baseline", "results": rows}, {"name": "pss", "results": rows[:2]}]}
    paths = sw.write_sweep(result, tmp_path)
    assert json.loads(open(paths["json"]).read())["checkpoints"][1]["name"] == "pss"
    img = mpimg.imread(paths["png"])
    assert img.shape[:2] == (500, 1200) and img[..., :3].std() > 0.05


def _crowded_sweep() -> dict:
    """Eight lines (four models, each with its ToMe line) whose points crowd one corner, a long device name."""
    entries = []
    for m in range(4):
        drop = [dict(keep_ratio=r, acc1=50 + m * 0.3 + 10 * r, images_per_s=300 / r + m, tokens=int(64 * r) + 1)
                for r in (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2)]
        merge = [dict(merge_r=k, keep_ratio=1.0, acc1=60 - 0.2 * k + m * 0.3, images_per_s=300 + 5 * k + m,
                      tokens=65 - k) for k in range(0, 14, 2)]
        entries += [{"name": f"model_{m}", "reduce": "drop", "results": drop},
                    {"name": f"model_{m} (ToMe)", "reduce": "merge", "results": merge}]
    return {"select": "default", "device": "NVIDIA H100 80GB HBM3 with a long name", "batch_size": 256,
            "checkpoints": entries}


def test_sweep_figure_titles_and_point_labels_do_not_overlap():
    from matplotlib.text import Annotation

    from pss.analysis.labels import overlaps

    fig = sw.sweep_figure(_crowded_sweep())
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    left, right = fig.axes
    assert not overlaps(left.title.get_window_extent(renderer).extents, right.title.get_window_extent(renderer).extents)
    for ax, first in ((left, "300/s"), (right, "1")):
        notes = [c for c in ax.get_children() if isinstance(c, Annotation)]
        boxes = [n.get_window_extent(renderer).extents for n in notes]
        assert notes and notes[0].get_text() == first  # the first model's first point is labelled
        assert not any(overlaps(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
        inside = ax.get_window_extent(renderer).extents
        assert all(inside[0] - 1 <= b[0] and b[2] <= inside[2] + 1 and inside[1] - 1 <= b[1] and b[3] <= inside[3] + 1
                   for b in boxes)
    total = 2 * 4 * (9 + 7)  # every point of both panels
    drawn = sum(isinstance(c, Annotation) for ax in fig.axes for c in ax.get_children())
    assert drawn < total and f"({total - drawn} point labels left out" in fig.legends[0].get_title().get_text()


def test_parse_keep_ratios():
    assert sw.parse_keep_ratios("1.0, 0.5,0.25") == [1.0, 0.5, 0.25]
    for bad in ("", "1.5", "0", "a,b"):
        with pytest.raises(ConfigError):
            sw.parse_keep_ratios(bad)


def test_patch_grid_uses_recorded_indices(model, tmp_path):
    torch.manual_seed(2)
    display = torch.rand(2, 32, 32, 3)
    x = (display.permute(0, 3, 1, 2) - 0.5) / 0.25
    out = tmp_path / "patches.png"
    res = viz.plot_patch_grid(model, x, display, [1.0, 0.5, 0.25], out, class_names=[f"c{i}" for i in range(10)],
                              row_labels=["a", "b"], panel_inches=2.0, dpi=50)
    img = mpimg.imread(out)
    assert img.shape[:2] == (int(50 * (2 * 2 + 0.5)), int(50 * (2 * 3 + 0.6)))
    preds = res["predictions"]
    assert [[p["kept"] for p in row] for row in preds] == [[64, 32, 16]] * 2
    probs = model(x).softmax(-1)
    assert preds[0][0]["prob"] == pytest.approx(probs[0].max().item(), rel=1e-5)
    assert preds[0][0]["name"] == f"c{probs[0].argmax().item()}"
    # the greyed-out picture matches the indices the model really used
    _, idx = viz.predict_kept(model, x, 0.25)
    mask = viz.kept_mask(idx[1], (8, 8))
    drawn = viz.grey_out(display[1], mask, (4, 4))
    kept_px = mask.repeat_interleave(4, 0).repeat_interleave(4, 1)
    assert torch.equal(drawn[kept_px], display[1][kept_px])
    assert not torch.allclose(drawn[~kept_px], display[1][~kept_px])
    assert idx.shape == (2, 16)


def test_kept_mask():
    m = viz.kept_mask(torch.tensor([0, 5]), (2, 3))
    assert m.tolist() == [[True, False, False], [False, False, True]]
    assert viz.kept_mask(None, (2, 2)).all()


def test_schedule_spec_and_plot(tmp_path):
    assert schedule_from_spec("cyclic:low=0.2,high=1.0") == CyclicSchedule(low=0.2, high=1.0)
    assert schedule_from_spec("0.5") == FixedSchedule(rho=0.5)
    assert schedule_from_spec("linear:start=0.4,end=1,grid=none") == LinearSchedule(start=0.4, end=1.0, grid=None)
    for bad in ("cyclic:low", "wavy:low=0.2", "cyclic:low=x"):
        with pytest.raises(ConfigError):
            schedule_from_spec(bad)
    scheds = {"cyclic": CyclicSchedule(), "linear": LinearSchedule(start=0.2, end=1.0)}
    res = viz.plot_schedules(scheds, 10, 30, tmp_path / "s.png", figsize=(6, 3), dpi=50)
    assert res["mean_keep_ratio"]["cyclic"] == pytest.approx(0.6)
    assert mpimg.imread(tmp_path / "s.png").shape[:2] == (150, 300)


def test_place_labels_keeps_label_boxes_apart():
    from pss.analysis.labels import overlaps, place_labels

    # far apart: each label straight above its point, `gap` off it
    assert place_labels([(10, 10), (100, 10)], [(20, 8), (20, 8)], gap=3) == [(0, 7), (0, 7)]
    # nine labels on one point, inside a box that holds a few: never on top of each other or the marker
    marker = (45, 45, 55, 55)
    anchors, sizes = [(50, 50)] * 9, [(20, 8)] * 9
    offsets = place_labels(anchors, sizes, gap=6, bounds=(0, 0, 100, 100), obstacles=[marker])
    boxes = [(50 + dx - 10, 50 + dy - 4, 50 + dx + 10, 50 + dy + 4) for dx, dy in filter(None, offsets)]
    assert offsets[:3] == [(0, 10), (0, -10), (16, 0)]  # above, below, then right of the marker
    assert 4 <= len(boxes) < 9 and offsets[-1] is None  # the last ones have no room left
    assert not any(overlaps(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert not any(overlaps(b, marker) for b in boxes)
    assert all(0 <= b[0] and b[2] <= 100 and 0 <= b[1] and b[3] <= 100 for b in boxes)
    # a point at the top edge: its label goes below
    assert place_labels([(50, 98)], [(20, 8)], gap=3, bounds=(0, 0, 100, 100)) == [(0, -7)]
    assert not overlaps((0, 0, 1, 1), (1, 0, 2, 1))  # touching edges do not count
    with pytest.raises(ValueError, match="2 anchors for 1 label sizes"):
        place_labels([(0, 0), (1, 1)], [(1, 1)])


def test_long_schedules_are_drawn_per_epoch(tmp_path):
    """A cyclic wave per epoch over 300 epochs: drawn per epoch (each epoch's range and mean), not 30,000 steps."""
    cyc = CyclicSchedule(low=0.2, high=1.0, warmup_epochs=1)
    mean, low, high = viz._per_epoch(cyc.values(10, 30), 10)
    assert (mean[0], low[0], high[0]) == (1.0, 1.0, 1.0)  # the warm-up epoch
    assert low[1:] == [0.2, 0.2] and high[1:] == [1.0, 1.0] and mean[1] == pytest.approx(0.6)
    res = viz.plot_schedules({"cyclic": cyc, "short": viz.ScheduleRun(FixedSchedule(rho=0.5), total_steps=40 * 10)},
                             10, 300 * 10, tmp_path / "s.png", dpi=50)
    assert res["drawn"] == "per epoch" and res["epochs"] == {"cyclic": 300, "short": 40}
    assert res["mean_keep_ratio"]["short"] == 0.5
    assert viz.plot_schedules({"cyclic": cyc}, 10, 30 * 10, tmp_path / "s.png", dpi=50)["drawn"] == "per step"


def test_trained_schedule_solves_the_budget_and_gives_the_sides():
    """A recipe with a budget and a resolution schedule: the keep ratio solved by the run's entry, the side per epoch."""
    from pss.config import config_from_dict
    from pss.resolution import from_dict as resolution_from_dict
    from pss.budget import plan as budget_plan
    from pss.train import build_model_for

    res = {"name": "step", "start": 0.5, "full_from": 0.5}
    cfg = config_from_dict({"epochs": 4, "model": {"name": "pss_vit_tiny_patch4_32", "kwargs": TINY},
                            "schedule": {"name": "fixed", "rho": 0.9}, "budget": 0.5, "resolution": res})
    run = viz.trained_schedule(cfg, 5)
    assert run.total_steps == 20 and run.img_size == 32
    plan = budget_plan(cfg, build_model_for(cfg, 10), 5)
    assert run.schedule == plan.schedule and run.schedule.rho < 0.9
    # the side of each epoch, of the resolution schedule the budget solved (its start) or the recipe's
    assert run.sides == (plan.resolution or resolution_from_dict(res)).epoch_sides(4, 32, 4)
    assert run.sides[:2] < [32, 32] and run.sides[2:] == [32, 32]
    assert "budget 0.5" in run.note
    plain = viz.trained_schedule(config_from_dict({"epochs": 3, "schedule": "cyclic"}), 5)
    assert plain == viz.ScheduleRun(CyclicSchedule(), 15)  # no budget, no resolution: the recipe's schedule


def test_sweep_gives_each_point_its_own_throughput(tmp_path, monkeypatch):
    """Throughput figures are paired with the points they were timed on by key, not by position: a stand-in
    timer that says which point it timed shows every row (drop per rule and ratio, merge, resize, per
    checkpoint) carrying its own figure."""
    from pss.checkpoint import atomic_save, training_checkpoint
    from pss.config import DataConfig, ModelConfig, TrainConfig, config_to_dict
    from pss.data import builtin_class_names
    from pss.models.merge import TokenMerging
    from pss.models.resize import InputResize

    paths = []
    for i in range(2):
        cfg = TrainConfig(model=ModelConfig(name="pss_vit_tiny_patch4_32", num_classes=3, img_size=32, kwargs=TINY),
                          data=DataConfig(builtin_num_train=12, builtin_num_val=6, builtin_num_classes=3, num_workers=0))
        torch.manual_seed(i)
        net = pss.build_model("pss_vit_tiny_patch4_32", 3, img_size=32, **TINY)
        paths.append(tmp_path / f"run{i}.pt")
        atomic_save(training_checkpoint(model=net, progress={"step": 0, "epoch": 0}, config=config_to_dict(cfg),
                                        class_names=builtin_class_names(3)), paths[-1])
    seen: list[torch.nn.Module] = []

    def figure(m, rho, select):  # which point this is, as a number
        if isinstance(m, (TokenMerging, InputResize)):
            base = 1000 if isinstance(m, TokenMerging) else 5000
            return base * (seen.index(m.model) + 1) + (m.r if isinstance(m, TokenMerging) else m.side)
        if m not in seen:
            seen.append(m)
        return 100 * (seen.index(m) + 1) + 10 * rho + sw.SELECT_RULES.index(select)

    monkeypatch.setattr(sw, "measure_throughput_points", lambda points, *a, **k: [figure(*p) for p in points])
    result = sw.sweep_checkpoints(paths, keep_ratios=[1.0, 0.5], select="all", reduce="all", merge_r=[0, 4],
                                  batch_size=2, warmup=0, iters=1, max_images=4)
    by_kind = {}
    for entry in result["checkpoints"]:
        i = [str(p) for p in paths].index(entry["checkpoint"])
        by_kind[(i, entry["reduce"])] = by_kind.get((i, entry["reduce"]), 0) + 1
        for row in entry["results"]:
            if entry["reduce"] == "drop":
                want = 100 * (i + 1) + 10 * row["keep_ratio"] + sw.SELECT_RULES.index(entry["select"])
            elif entry["reduce"] == "merge":
                want = 1000 * (i + 1) + row["merge_r"]
            else:
                want = 5000 * (i + 1) + row["side"]
            assert row["images_per_s"] == pytest.approx(want), (entry["name"], row)
    assert by_kind == {(0, "drop"): len(sw.sweep_rules("all")), (0, "merge"): 1, (0, "resize"): 1,
                       (1, "drop"): len(sw.sweep_rules("all")), (1, "merge"): 1, (1, "resize"): 1}
