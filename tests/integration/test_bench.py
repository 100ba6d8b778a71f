"""`pss bench speed`: the table and JSON hold the figures the issue asks for, with sane values."""
import json

import pytest

from pss.cli import main


def test_bench_speed_json(tmp_path, capfd):
    out = tmp_path / "speed.json"
    rc = main(["bench", "speed", "--model", "pss_vit_tiny_patch4_32", "--batch-size", "4", "--keep", "0.5,0.25",
               "--warmup", "1", "--iters", "2", "--set", "depth=1", "--set", "embed_dim=32", "--set", "num_heads=2",
               "--inference", "--json", str(out)])
    assert rc == 0
    printed = capfd.readouterr()  # file descriptors 1 and 2 themselves: the profiler's native logging lands there
    assert "USDT:" not in printed.err and "gpuGetDeviceCount" not in printed.err and "profiler_" not in printed.err
    report = json.loads(out.read_text())
    assert report["model"] == "pss_vit_tiny_patch4_32" and report["device"].startswith("cpu")
    rows = report["results"]
    assert [r["keep_ratio"] for r in rows] == [1.0, 0.5, 0.25]  # rho = 1.0 added as the reference
    assert [r["tokens"] for r in rows] == [65, 33, 17]
    assert rows[0]["relative_time"] == 1.0 and rows[0]["flop_ratio"] == 1.0
    flops = [r["flop_ratio"] for r in rows]
    assert flops[0] > flops[1] > flops[2] > 0
    # FLOPs fall roughly with the token count (attention is quadratic, so a little faster)
    assert rows[1]["flop_ratio"] == pytest.approx(33 / 65, rel=0.1)
    assert all(r["step_time_s"] > 0 and r["infer_images_per_s"] > 0 for r in rows)
    # the optimizer step is timed on its own, and the model's own ratio leaves it out of both times
    opt = report["optimizer_time_s"]
    assert 0 < opt < rows[0]["step_time_s"]
    assert rows[0]["model_relative_time"] == pytest.approx(1.0)
    for r in rows[1:]:
        expected = max(r["step_time_s"] - opt, 0.0) / (rows[0]["step_time_s"] - opt)
        assert r["model_relative_time"] == pytest.approx(expected)
    # the attention implementation and the kernels a step ran; peak memory is measured on CUDA only
    assert report["attention"] == "sdpa" and report["pos_embed"] == "rel_bias"
    assert all(any("scaled_dot_product" in k for k in r["attention_kernels"]) for r in rows)
    assert all(r["peak_memory_mb"] is None for r in rows)
    out = printed.out
    assert "| 0.50 | 33 |" in out and "optimizer step alone:" in out
    assert "attention: sdpa; kernels aten::_scaled_dot_product" in out and "peak mem (MB)" in out


def test_bench_attn_impl(capsys):
    tiny = ["--model", "pss_vit_tiny_patch4_32", "--batch-size", "2", "--keep", "0.5", "--warmup", "0", "--iters", "1",
            "--set", "depth=1", "--set", "embed_dim=32", "--set", "num_heads=2"]
    assert main(["bench", "speed", *tiny, "--attn-impl", "sdpa"]) == 0
    assert "attention: sdpa" in capsys.readouterr().out
    # FlexAttention cannot train on the CPU: one line saying so, and what to set instead
    assert main(["bench", "speed", *tiny, "--attn-impl", "flex"]) == 2
    err = capsys.readouterr().err
    assert "attn_impl" in err and "auto" in err
    assert main(["bench", "speed", "--model", "vit_tiny_patch16_224", "--attn-impl", "flex"]) == 2
    assert "--attn-impl applies to pss_vit_* models" in capsys.readouterr().err


def test_bench_timm_model_and_bad_values(capsys):
    assert main(["bench", "speed", "--model", "vit_tiny_patch16_224", "--img-size", "32", "--batch-size", "2",
                 "--keep", "0.5", "--warmup", "0", "--iters", "1", "--set", "depth=1"]) == 0
    assert main(["bench", "speed", "--model", "vit_tiny_patch16_224", "--keep", "1.5"]) == 2
    assert "keep ratio must be in (0, 1]" in capsys.readouterr().err
    assert main(["bench", "speed", "--model", "nonexistent_vit"]) == 2
