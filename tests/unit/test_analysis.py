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

    monkeypatch.setattr(sw, "measure_throughput_points", lambda points, *a: [figure(*p) for p in points])
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
