"""Foreign-checkpoint conversion: each named rule fires on the input it is for, and none on our own weights."""
from __future__ import annotations

import pytest
import torch
from timm.layers import resample_abs_pos_embed, resize_rel_pos_bias_table

import pss
from pss.models.convert import RULES, InitReport, convert_state_dict

TINY = dict(depth=2, embed_dim=32, num_heads=2)
RULE = {r.name: r for r in RULES}


def tiny(num_classes=10, img_size=32, **kw):
    return pss.build_model("pss_vit_tiny_patch4_32", num_classes=num_classes, img_size=img_size, **{**TINY, **kw})


def randomised(model):
    """Every tensor random, so that a value in the wrong place shows."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for v in model.state_dict().values():
            if v.is_floating_point():
                v.copy_(torch.randn(v.shape, generator=g))
    return model


def apply(name, sd, model):
    """One rule on its own: (its output, its report); the input dict must come back untouched."""
    before = dict(sd)
    report = InitReport("test")
    out = RULE[name].apply(sd, model, report)
    assert list(sd) == list(before) and all(sd[k] is before[k] for k in sd)
    return out, report


def assert_same(a: dict, b: dict):
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_the_rules_table():
    assert [r.name for r in RULES] == [
        "strip wrapper prefixes",
        "drop pre-training keys",
        "BEiT / SimMIM key names",
        "drop norm for fc_norm",
        "resize pos embed",
        "resize relative position bias",
        "new head",
    ]


NATIVE = {
    "rel_bias": lambda: tiny(),
    "learned": lambda: tiny(pos_embed="learned"),
    "rope": lambda: tiny(pos_embed="rope"),
    "avg_pool_layer_scale": lambda: tiny(global_pool="avg", init_values=0.1),
    "no_head": lambda: tiny(num_classes=0),
    "timm_vit": lambda: pss.build_model("vit_tiny_patch16_224", num_classes=10, img_size=32, patch_size=4, **TINY),
}


@pytest.mark.parametrize("kind", NATIVE)
def test_no_rule_fires_on_a_pss_native_state_dict(kind):
    model = randomised(NATIVE[kind]())
    sd = model.state_dict()
    for rule in RULES:
        out, report = apply(rule.name, sd, model)
        assert out is None and report == InitReport("test"), rule.name
    out, report = convert_state_dict(sd, model)
    assert_same(out, sd)
    assert report.rules == [] and report.loaded == list(sd)
    assert not (report.dropped or report.renamed or report.resized or report.new)


def test_strip_wrapper_prefixes():
    model = randomised(tiny())
    sd = model.state_dict()
    out, report = apply("strip wrapper prefixes", {f"module._orig_mod.{k}": v for k, v in sd.items()}, model)
    assert_same(out, sd)
    assert report.dropped == []
    # An encoder-decoder file: the encoder's keys stay, the rest is dropped.
    simmim = {**{f"encoder.{k}": v for k, v in sd.items()}, "decoder.0.weight": torch.ones(48, 32, 1, 1)}
    out, report = apply("strip wrapper prefixes", simmim, model)
    assert_same(out, sd)
    assert report.dropped == ["decoder.0.weight"]
    _, report = convert_state_dict(simmim, model)
    assert report.rules == ["strip wrapper prefixes"] and report.dropped == ["decoder.0.weight"]
    # module. / _orig_mod. on only some keys is not a wrapper's: nothing happens.
    assert apply("strip wrapper prefixes", {**sd, "module.extra": torch.ones(1)}, model)[0] is None


def test_drop_pre_training_keys():
    model = randomised(tiny())
    sd = model.state_dict()
    extra = {"mask_token": torch.ones(1, 1, 32), "decoder_pred.weight": torch.ones(48, 16), "lm_head.weight": torch.ones(8, 32),
             "blocks.0.attn.relative_position_index": torch.zeros(65, 65, dtype=torch.long),
             "rel_pos_bias.relative_position_index": torch.zeros(65, 65, dtype=torch.long)}
    out, report = apply("drop pre-training keys", {**sd, **extra}, model)
    assert_same(out, sd)
    assert report.dropped == list(extra)
    _, report = convert_state_dict({**sd, **extra}, model)
    assert report.rules == ["drop pre-training keys"] and report.dropped == list(extra)


def test_beit_simmim_key_names():
    model = randomised(tiny(init_values=0.1))
    with torch.no_grad():
        for b in model.blocks:
            b.attn.qkv.bias[32:64] = 0  # BEiT has no key bias
            b.attn.relative_position_bias_table.copy_(model.blocks[0].attn.relative_position_bias_table)
    sd = model.state_dict()
    beit = {"rel_pos_bias.relative_position_bias_table": sd["blocks.0.attn.relative_position_bias_table"]}
    for k, v in sd.items():
        if k.endswith("attn.qkv.bias"):
            beit[k.replace("qkv.bias", "q_bias")], beit[k.replace("qkv.bias", "v_bias")] = v[:32], v[64:]
        elif k.endswith((".ls1.gamma", ".ls2.gamma")):
            beit[k.replace(".ls1.gamma", ".gamma_1").replace(".ls2.gamma", ".gamma_2")] = v
        elif not k.endswith("relative_position_bias_table"):
            beit[k] = v
    out, report = apply("BEiT / SimMIM key names", beit, model)
    assert_same(dict(sorted(out.items())), dict(sorted(sd.items())))
    for i in range(2):
        assert torch.equal(out[f"blocks.{i}.attn.qkv.bias"], torch.cat([beit[f"blocks.{i}.attn.q_bias"], torch.zeros(32), beit[f"blocks.{i}.attn.v_bias"]]))
        assert out[f"blocks.{i}.attn.relative_position_bias_table"] is not beit["rel_pos_bias.relative_position_bias_table"]  # a copy each
    assert report.renamed == [
        "rel_pos_bias.relative_position_bias_table -> 2 x blocks.N.attn.relative_position_bias_table",
        "blocks.0.attn.q_bias/v_bias -> qkv.bias", "blocks.0.gamma_1 -> blocks.0.ls1.gamma", "blocks.0.gamma_2 -> blocks.0.ls2.gamma",
        "blocks.1.attn.q_bias/v_bias -> qkv.bias", "blocks.1.gamma_1 -> blocks.1.ls1.gamma", "blocks.1.gamma_2 -> blocks.1.ls2.gamma",
    ]
    _, report = convert_state_dict(beit, model)
    assert report.rules == ["BEiT / SimMIM key names"] and len(report.renamed) == 7 and not report.new


@pytest.mark.parametrize("name, source, target, prefix, dropped, new", [
    # the encoder's final norm (e.g. MAE's) into a model fine-tuned with average pooling: a fresh fc_norm
    ("drop norm for fc_norm", {}, {"global_pool": "avg"}, "norm.", ["norm.weight", "norm.bias"], ["fc_norm.weight", "fc_norm.bias"]),
    # a head for 5 classes into a model for 10
    ("new head", {"num_classes": 5}, {}, "head.", ["head.weight (5, 32)", "head.bias (5,)"], ["head.weight", "head.bias"]),
])
def test_rules_that_leave_a_part_to_start_fresh(name, source, target, prefix, dropped, new):
    sd = randomised(tiny(**source)).state_dict()
    model = tiny(**target)
    out, report = apply(name, sd, model)
    assert_same(out, {k: v for k, v in sd.items() if not k.startswith(prefix)})
    assert report.dropped == dropped
    _, report = convert_state_dict(sd, model)
    assert report.rules == [name] and report.dropped == dropped and report.new == new


def test_resize_pos_embed():
    sd = randomised(tiny(img_size=16, pos_embed="learned")).state_dict()  # 4 x 4 grid
    model = tiny(pos_embed="learned")  # 8 x 8 grid
    out, report = apply("resize pos embed", sd, model)
    expect = resample_abs_pos_embed(sd["pos_embed"], new_size=[8, 8], old_size=[4, 4], num_prefix_tokens=1)
    assert out["pos_embed"].shape == (1, 65, 32) and torch.equal(out["pos_embed"], expect)
    assert_same({k: v for k, v in out.items() if k != "pos_embed"}, {k: v for k, v in sd.items() if k != "pos_embed"})
    assert report.resized == ["pos_embed"]
    _, report = convert_state_dict(sd, model)
    assert report.rules == ["resize pos embed"] and report.resized == ["pos_embed"]


def test_resize_relative_position_bias():
    sd = randomised(tiny(img_size=16)).state_dict()  # 4 x 4 grid: 52 rows
    model = tiny()  # 8 x 8 grid: 228 rows
    out, report = apply("resize relative position bias", sd, model)
    tables = [f"blocks.{i}.attn.relative_position_bias_table" for i in range(2)]
    for k in tables:
        expect = resize_rel_pos_bias_table(sd[k], new_window_size=(8, 8), new_bias_shape=(228, 2))
        assert out[k].shape == (228, 2) and torch.equal(out[k], expect)
    assert_same({k: v for k, v in out.items() if k not in tables}, {k: v for k, v in sd.items() if k not in tables})
    assert report.resized == tables
    _, report = convert_state_dict(sd, model)
    assert report.rules == ["resize relative position bias"] and report.resized == tables


def test_rules_fire_in_table_order_on_a_simmim_checkpoint():
    """A SimMIM file of a smaller input and another head: every rule it needs, in the table's order."""
    src = randomised(tiny(img_size=16, num_classes=5, init_values=0.1))
    sd = {}
    for k, v in src.state_dict().items():
        if k.endswith("attn.qkv.bias"):
            sd[k.replace("qkv.bias", "q_bias")], sd[k.replace("qkv.bias", "v_bias")] = v[:32], v[64:]
        else:
            sd[k] = v
    ckpt = {**{f"encoder.{k}": v for k, v in sd.items()}, "encoder.mask_token": torch.zeros(1, 1, 32),
            "decoder.0.weight": torch.zeros(48, 32, 1, 1)}
    _, report = convert_state_dict(ckpt, tiny(init_values=0.1))
    assert report.rules == ["strip wrapper prefixes", "drop pre-training keys", "BEiT / SimMIM key names",
                            "resize relative position bias", "new head"]
    assert report.dropped == ["decoder.0.weight", "mask_token", "head.weight (5, 32)", "head.bias (5,)"]
