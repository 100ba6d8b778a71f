"""Side-by-side check that this checkout's model is no slower than the one at a git ref.

    python benchmarks/speed_vs_ref.py --ref a075fa9 --device cpu --model pss_vit_tiny_patch4_32 --batch 64

Builds the model from this checkout (its default attn_impl, i.e. what training runs on the device) and
the same architecture from `src/pss/models/vit.py` at REF, with the same weights, and times training
steps (forward, backward, SGD) of the two alternately, step by step, at each keep ratio: machine load
then falls on both alike, which matters on a shared machine. Prints the median step time of each and
the ratio (this / ref) per keep ratio, and writes JSON + Markdown under benchmarks/results/.
"""
from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))  # results_page, beside this script

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import pss  # noqa: E402
from results_page import write as write_results_page  # noqa: E402
from pss.models.vit import ARCHS  # noqa: E402
from pss.runinfo import run_info  # noqa: E402
from pss.runtime import synchronize  # noqa: E402
from pss.study import write_record  # noqa: E402


def ref_model_class(ref: str) -> type:
    """PssVisionTransformer as defined at git `ref` (its timm registration left out, so it does not
    replace this checkout's)."""
    src = subprocess.run(["git", "show", f"{ref}:src/pss/models/vit.py"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    src = src.split("# Registration with timm")[0]
    mod = types.ModuleType(f"pss_vit_at_{ref}")
    exec(compile(src, f"{ref}:vit.py", "exec"), mod.__dict__)
    return mod.PssVisionTransformer


def to_markdown(rec: dict) -> str:
    """The record as Markdown (also what benchmarks/results/README.md shows)."""
    md = [f"# Training step of this checkout vs {rec['ref']} ({rec['device']})", "",
          f"{rec['model']}, {rec['pos_embed']}, batch {rec['batch_size']}, attention here: {rec['attention']}; "
          f"torch {rec['torch']}, timm {rec['timm']}, commit {rec['commit']}, {rec['date']}. "
          f"Medians of {rec['iters']} alternated steps each.", "",
          f"| keep ratio | this (ms) | {rec['ref']} (ms) | this / ref |", "|---|---|---|---|"]
    md += [f"| {r['keep_ratio']:.2f} | {r['this_ms']:.1f} | {r['ref_ms']:.1f} | {r['ratio']:.3f} |" for r in rec["results"]]
    return "\n".join(md) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", required=True, help="git commit or branch to compare with")
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="pss_vit_tiny_patch4_32")
    p.add_argument("--pos-embed", default="rel_bias")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--keep", default="1.0,0.8,0.6,0.4,0.2")
    p.add_argument("--iters", type=int, default=15, help="timed steps of each model per keep ratio")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)

    dev = torch.device(args.device)
    kw = {**ARCHS[args.model], "num_classes": 10, "pos_embed": args.pos_embed}
    torch.manual_seed(0)
    new = pss.build_model(args.model, 10, pos_embed=args.pos_embed).to(dev)
    old = ref_model_class(args.ref)(**kw).to(dev)
    old.load_state_dict(new.state_dict())
    size = kw["img_size"]
    x = torch.randn(args.batch, 3, size, size, device=dev)
    y = torch.randint(0, 10, (args.batch,), device=dev)
    opts = {m: torch.optim.SGD(m.parameters(), lr=1e-4) for m in (new, old)}

    def step(m) -> float:
        synchronize(dev)
        t0 = time.perf_counter()
        F.cross_entropy(m(x), y).backward()
        opts[m].step()
        opts[m].zero_grad(set_to_none=True)
        synchronize(dev)
        return time.perf_counter() - t0

    rows = []
    for rho in (float(v) for v in args.keep.split(",")):
        for m in (new, old):
            pss.set_keep_ratio(m, rho, "magnitude")
        for _ in range(args.warmup):
            step(new), step(old)
        times: dict[str, list[float]] = {"this": [], "ref": []}
        for i in range(args.iters):  # alternate, and alternate who goes first
            order = [("this", new), ("ref", old)] if i % 2 == 0 else [("ref", old), ("this", new)]
            for name, m in order:
                times[name].append(step(m))
        t_new, t_old = statistics.median(times["this"]), statistics.median(times["ref"])
        rows.append(dict(keep_ratio=rho, this_ms=1000 * t_new, ref_ms=1000 * t_old, ratio=t_new / t_old))
        print(f"rho {rho:.2f}: this {1000 * t_new:.1f} ms, {args.ref} {1000 * t_old:.1f} ms, ratio {t_new / t_old:.3f}",
              flush=True)

    info = run_info(dev)
    rec = dict(kind="speed_vs_ref", ref=args.ref, model=args.model, pos_embed=args.pos_embed, batch_size=args.batch,
               attention=new.attention_impl(), iters=args.iters, **info, date=dt.date.today().isoformat(), results=rows)
    out = Path(args.results)
    tag = "cpu" if dev.type == "cpu" else "cuda"
    path = write_record(out / f"speed_vs_ref_{tag}_{args.pos_embed}_{rec['date']}.json", rec, to_markdown(rec))
    write_results_page(out)
    print(f"wrote {path} and {path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    from pss.cli import guarded  # a ConfigError is one line, a signal exit code 130

    raise SystemExit(guarded("speed_vs_ref.py", main))
