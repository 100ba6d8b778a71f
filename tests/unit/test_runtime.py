"""pss.runtime: the one precision and device rule, wrapper unwrapping, top-k counting."""
import contextlib

import pytest
import torch
from torch import nn

from pss.errors import ConfigError
from pss.runtime import (
    PRECISIONS,
    Amp,
    DistInfo,
    autocast,
    resolve_amp,
    resolve_device,
    topk_correct,
    unwrap_model,
    wraps_ddp,
)


@pytest.mark.parametrize("name, dtype", [("auto", None), ("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_precision_on_cpu(name, dtype):
    amp = resolve_amp(name, torch.device("cpu"))
    assert amp == Amp("cpu", dtype)
    assert amp.name == ("fp32" if name == "auto" else name)


def test_unknown_precision_is_one_line_naming_the_choices():
    with pytest.raises(ConfigError) as e:
        resolve_amp("fp8", "cpu")
    msg = str(e.value)
    assert "\n" not in msg and "'fp8'" in msg
    assert all(p in msg for p in PRECISIONS)


@pytest.mark.parametrize("bf16_ok, expect", [(True, torch.bfloat16), (False, torch.float16)])
def test_auto_precision_on_cuda(monkeypatch, bf16_ok, expect):
    """One rule for train, sweep and bench: bf16 where the GPU supports it, else fp16 (sweep and
    bench used to pick bf16 on every CUDA GPU). Checked without a GPU: only the support query is faked."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_ok)
    assert resolve_amp("auto", torch.device("cuda", 0)) == Amp("cuda", expect)
    assert resolve_amp("fp32", "cuda") == Amp("cuda", None)  # a named precision is taken as it is


def test_amp_autocast():
    assert isinstance(Amp("cpu", None).autocast(), contextlib.nullcontext)
    with Amp("cpu", torch.bfloat16).autocast():
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    with autocast("cpu", torch.bfloat16):
        y = nn.Linear(4, 4)(torch.randn(2, 4))
    assert y.dtype == torch.bfloat16


def test_resolve_device_on_cpu(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu"), DistInfo(rank=1, world_size=2, local_rank=1)) == torch.device("cpu")
    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("auto", DistInfo()) == torch.device("cpu")
    for name in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError, match="no CUDA GPU is available"):
            resolve_device(name)


def test_resolve_device_cuda_index(monkeypatch):
    """auto / cuda in a training process is its LOCAL_RANK's GPU; elsewhere the bare cuda device."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    dist_info = DistInfo(rank=3, world_size=4, local_rank=1)
    assert resolve_device("auto", dist_info) == torch.device("cuda", 1)
    assert resolve_device("cuda", dist_info) == torch.device("cuda", 1)
    assert resolve_device("cuda", DistInfo()) == torch.device("cuda", 0)
    with pytest.raises(ConfigError, match="has 2 CUDA GPU"):
        resolve_device("cuda:2")


class _FakeDDP(nn.parallel.DistributedDataParallel):
    """A DDP wrapper without a process group: only `.module` is set (as DDP sets it)."""

    def __init__(self, module: nn.Module) -> None:
        nn.Module.__init__(self)
        self.module = module


class _FakeCompiled(nn.Module):
    """torch.compile's OptimizedModule holds the model as `._orig_mod`."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self._orig_mod = module


def test_unwrap_through_wrapper_chains():
    bare = nn.Linear(2, 2)
    assert unwrap_model(bare) is bare and not wraps_ddp(bare)
    for wrapped, ddp in [
        (_FakeDDP(bare), True),
        (_FakeCompiled(bare), False),
        (_FakeCompiled(_FakeDDP(bare)), True),
        (_FakeDDP(_FakeCompiled(bare)), True),
        (_FakeCompiled(_FakeCompiled(_FakeDDP(_FakeCompiled(bare)))), True),
    ]:
        assert unwrap_model(wrapped) is bare
        assert wraps_ddp(wrapped) is ddp
    compiled = torch.compile(bare)
    assert unwrap_model(compiled) is bare and not wraps_ddp(compiled)


def test_topk_correct_by_value():
    logits = torch.tensor([
        [0.1, 0.9, 0.0, 0.0, 0.0, 0.0, 0.0],  # target 1: top-1
        [0.9, 0.1, 0.8, 0.7, 0.6, 0.5, 0.0],  # target 1: 6th highest, a top-5 miss
        [0.9, 0.1, 0.8, 0.7, 0.6, 0.5, 0.0],  # target 5: 5th highest, a top-5 hit only
        [0.5, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0],  # target 2: tied for first, inside the top 3 either way
    ])
    targets = torch.tensor([1, 1, 5, 2])
    counts = topk_correct(logits, targets, (1, 3, 5))
    assert counts.dtype == torch.int64 and counts.tolist()[1:] == [2, 3]
    assert counts[0] in (1, 2)  # which of the tied first three torch.topk puts first is its own choice
    assert topk_correct(logits, targets, (5, 1)).tolist()[0] == 3  # any order of ks
    # a tie never counts a row twice: all ten logits equal, every k counts each row once at most
    flat = torch.zeros(3, 10)
    assert topk_correct(flat, torch.tensor([0, 4, 9]), (10,)).tolist() == [3]


def test_topk_correct_clips_k_to_the_classes():
    """k above the number of classes counts every class: each row a hit (as top-5 of a 3-class model)."""
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    targets = torch.tensor([2, 0])
    assert topk_correct(logits, targets).tolist() == [0, 2]  # default ks (1, 5)
    assert topk_correct(logits, targets, (1, 2, 3, 100)).tolist() == [0, 0, 2, 2]


def test_bench_and_sweep_take_the_one_rule():
    """`pss bench speed` defaults to auto and records the precision that ran; `pss sweep` and the
    training recipe accept the same names."""
    from pss.bench import speed_benchmark
    from pss.cli import build_parser
    from pss.config import TrainConfig

    p = build_parser()
    assert p.parse_args(["bench", "speed"]).amp == "auto"
    assert p.parse_args(["sweep", "c.pt", "-o", "d"]).precision == "auto"
    for name in PRECISIONS:
        assert TrainConfig(amp=name).amp == name  # the recipe's `amp` takes every name the runtime knows
    report = speed_benchmark("pss_vit_tiny_patch4_32", batch_size=2, keep_ratios=(0.5,), device="auto", amp="auto",
                             warmup=0, iters=1, model_kwargs=dict(depth=1, embed_dim=32, num_heads=2))
    expect = resolve_amp("auto", resolve_device("auto")).name
    assert report["amp"] == expect


@pytest.mark.parametrize("threads, words", [(1, "1 thread)"), (2, "2 threads)")])
def test_cpu_device_name_counts_threads_in_words(threads, words):
    from pss.runinfo import device_name

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        name = device_name("cpu")
    finally:
        torch.set_num_threads(before)
    assert name.startswith("cpu (") and name.endswith(words)
