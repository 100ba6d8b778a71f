"""timm habits on the command line: shortcut flags, unknown flags answered with --set, one name per
concept (-o/--output, --amp, device auto), and one-line errors instead of tracebacks."""
from __future__ import annotations

import pytest
import torch
import yaml

from pss.cli import build_parser, main
from conftest import write_recipe


def test_timm_flags_map_onto_set(tmp_path):
    recipe = write_recipe(tmp_path, epochs=3)
    out = tmp_path / "run"
    code = main(["train", "--quiet", "--config", str(recipe), "-o", str(out), "--model", "pss_vit_tiny_patch4_32",
                 "--epochs", "1", "--batch-size", "32", "--lr", "2e-3", "--amp", "fp32", "--set", "optim.lr=3e-3"])
    assert code == 0
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["epochs"] == 1 and cfg["batch_size"] == 32 and cfg["amp"] == "fp32"
    assert cfg["optim"]["lr"] == 3e-3  # --set comes after the shortcuts, so it wins


def test_shortcut_flags_parse():
    args = build_parser().parse_args(["train", "--amp", "--compile", "--pretrained", "--model", "deit_tiny_patch16_224"])
    from pss.commands.train import alias_overrides

    assert alias_overrides(args) == ["model.name=deit_tiny_patch16_224", "amp=auto", "compile=true",
                                     "model.kwargs.pretrained=true"]
    assert build_parser().parse_args(["pretrain", "-o", "x", "--epochs", "2"]).output == "x"


def test_unknown_flags_get_the_set_form(capsys):
    assert main(["train", "--epochs", "10", "--weight-decay", "0.05", "--drop-path=0.1", "--model-ema", "--warmup-epochs", "5",
                 "--frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments" in err
    assert "--weight-decay -> --set optim.weight_decay=0.05" in err
    assert "--drop-path=0.1 -> --set model.drop_path_rate=0.1" in err
    assert "--model-ema -> --set ema.enabled=true" in err
    assert "--warmup-epochs -> --set lr_sched.warmup_epochs=5" in err
    assert "--frobnicate: no such setting" in err
    assert main(["sweep", "x.pt", "-o", "d", "--bogus"]) == 2
    assert "see pss sweep --help" in capsys.readouterr().err


def test_one_name_per_concept():
    p = build_parser()
    sweep = p.parse_args(["sweep", "c.pt", "-o", "d", "--amp", "bf16"])
    assert sweep.precision == "bf16"
    assert p.parse_args(["sweep", "c.pt", "-o", "d", "--precision", "fp32"]).precision == "fp32"  # old spelling
    bench = p.parse_args(["bench", "speed", "-o", "r.json"])
    assert str(bench.json) == "r.json" and bench.device == "auto"
    assert str(p.parse_args(["bench", "speed", "--json", "r.json"]).json) == "r.json"  # old spelling


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_sweep_on_missing_gpu_is_one_line(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "missing.pt"), "--device", "cuda", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no CUDA GPU is available" in err and "Traceback" not in err


def test_bench_compile_allows_a_graph_per_keep_ratio(monkeypatch):
    import torch._dynamo

    import pss.commands.bench as bench_cmd

    cfg = torch._dynamo.config
    old = cfg.recompile_limit
    seen = {}
    monkeypatch.setattr(bench_cmd, "speed_benchmark", lambda *a, **kw: seen.update(kw) or {})
    monkeypatch.setattr(bench_cmd, "format_speed_table", lambda report: "")
    try:
        cfg.recompile_limit = 8
        assert main(["bench", "speed", "--compile", "--inference", "--keep", "1,0.8,0.6,0.4,0.2"]) == 0
        assert cfg.recompile_limit >= 2 * 5 + 1 and seen["device"] == "cpu"
    finally:
        cfg.recompile_limit = old
