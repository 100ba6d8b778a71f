"""The README's "Use it in your own loop" code blocks run as written, and do what the text says."""
from __future__ import annotations

import re

import torch

import pss
from conftest import ROOT

README = ROOT / "README.md"


def _section_blocks(title: str) -> list[str]:
    text = README.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end if end > 0 else None], flags=re.S)


def test_own_loop_blocks_run_as_written(tmp_path, monkeypatch, capsys):
    blocks = _section_blocks("Use it in your own loop")
    assert len(blocks) == 2
    loop = blocks[0]
    assert loop.count("# + pss") == 3  # three added lines
    assert len(loop.strip().splitlines()) - 3 <= 22  # the user's loop, around 20 lines
    monkeypatch.chdir(tmp_path)  # the second block writes checkpoint.pt
    ns: dict = {}
    exec(compile(loop, "README.md[own loop]", "exec"), ns)
    out = capsys.readouterr().out
    assert out.count("epoch ") == 3 and out.count("keep ratio 0.4,") == 3
    model, keep = ns["model"], ns["keep_sched"]
    assert keep.last_step == 3 * len(ns["train_loader"])
    # the recommended recipe: a fixed 0.4 with random selection, over 1.5x the epochs
    assert keep.keep_ratios() == [0.4] and model.patch_drop.select == "random" and ns["epochs"] == 1.5 * 2
    # trained with fewer tokens, evaluated with all of them
    assert not model.training and pss.get_keep_ratio(model) == 1.0
    assert model.train().patch_drop.keep_ratio == keep.keep_ratio
    model.eval()

    exec(compile(blocks[1], "README.md[resume, compile]", "exec"), ns)
    assert (tmp_path / "checkpoint.pt").exists()
    assert torch._dynamo.config.recompile_limit >= len(keep.keep_ratios()) + 1
    assert ns["logits"].shape == (16, 10)
    assert model.patch_drop.explicit_keep_ratio is None  # the with-block's ratio is gone


def test_python_block_runs():
    (block,) = _section_blocks("Using it from Python")
    ns: dict = {}
    exec(compile(block, "README.md[python]", "exec"), ns)
    assert ns["logits"].shape == (8, 1000)
    sampler = ns["model"].patch_drop  # trained as recommended: 0.4 at random, "78 of 196 patches"
    assert (sampler.keep_ratio, sampler.select) == (0.4, "random") and pss.select.num_kept(196, 0.4) == 78
