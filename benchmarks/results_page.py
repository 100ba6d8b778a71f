"""Write benchmarks/results/README.md from the records beside it: one section per study, each with the
command that makes its records, the records it comes from and their tables, formatted by the scripts
that wrote them. Every recording script calls `write` after recording; by hand:

    python benchmarks/results_page.py [--results benchmarks/results]

The page is generated: edit the scripts (or the descriptions below), never the page.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the sibling scripts, whose formatters make the tables
sys.path.insert(0, str(HERE.parent / "src"))  # run from a checkout without installing

PAGE = "README.md"

# kind -> (title, what it measures, the command that records it)
STUDIES: dict[str, tuple[str, str, str]] = {
    "recipe_study": (
        "Which recipe: PSS against the baseline given the same training time",
        "Every PSS arm trains at a compute budget of 0.6 of the full run's FLOPs and differs from the others in one "
        "factor (selection rule, schedule shape, position scheme, initialisation); each is compared with the full "
        "baseline and the equal-time baseline of its seed (the full-token recipe for 0.6x the epochs, LR schedule "
        "fully decayed). Final-epoch top-1, means over seeds, per seed in brackets.",
        "python benchmarks/recipe_study.py --seeds 0,1",
    ),
    "budget_study": (
        "Where PSS pays: horizons, tokens for epochs, budget curve",
        "At a horizon of E epochs and a budget of 0.6: the full run, the equal-time baseline, the recommended cyclic "
        "recipe, a fixed random keep ratio (timm's patch dropout, solved from the budget) and tokens for epochs "
        "(1.5 E epochs at fewer tokens); rope, the 0.1 grid for every arm. FLOP cost relative to the full run.",
        "python benchmarks/budget_study.py --data PATH --part horizons --horizons 15,45 --seeds 0,1",
    ),
    "token_study": (
        "Drop, resize or both: the best way to spend a token budget, at 64 and 256 tokens",
        "At two token scales (4 px patches: 64 tokens; 2 px patches: 256 tokens) and budgets 0.6 and 0.33 of the "
        "full run's FLOPs: the full run, the equal-time baseline, a fixed random drop at the recipe's epochs (timm's "
        "patch_drop_rate), tokens for epochs, a resolution curriculum (EfficientTrain++-like), resolution for "
        "epochs, and both levers solved jointly. Arms, shapes and rules fixed in benchmarks/token_study.py before "
        "any run; FLOP cost counts side and keep ratio.",
        "python benchmarks/token_study.py --data PATH --scales t256,t64 --budgets 0.6,0.33 --seeds 0,1",
    ),
    "e2e": (
        "CIFAR-10 end to end: baseline, PSS, the paper's recipe, equal-time baseline",
        "The shipped CIFAR-10 recipes trained side by side (or pss.study's CPU-reduced set-up, labelled as such), "
        "then every best checkpoint swept over keep ratios (dynamic inference). None of the records below has an "
        "equal-time baseline or a budgeted run, so none came from the faulty equal-time path under tokens for epochs "
        "(docs/findings.md): they are unaffected.",
        "python benchmarks/cifar10.py --device cuda --seeds 0,1      # CPU: --cpu-reduced",
    ),
    "pretrain_finetune": (
        "Pre-training (SimMIM), then fine-tuning with PSS",
        "SimMIM pre-training, then fine-tuning with and without PSS from the same encoder, and the same model "
        "trained from scratch; fine-tuning time ratio and top-1 against the paper's.",
        "python benchmarks/pretrain_finetune.py --data path/to/cifar10-jpg.tar.gz      # CPU: --cpu-reduced",
    ),
    "speed": (
        "Training-step time against the FLOP ratio",
        "Full training steps (forward, backward, AdamW) timed after warm-up at each keep ratio, against the FLOP "
        "ratio counted for the same shapes; the optimizer's share is given so the model's own ratio can be read.",
        "pss bench speed --model NAME --json FILE",
    ),
    "speed_attn": (
        "Attention implementations and position schemes",
        "The same timing for each position scheme (rel_bias, rope, learned) and attention implementation "
        "(SDPA, FlexAttention).",
        "python benchmarks/speed.py --device cuda",
    ),
    "speed_vs_ref": (
        "This checkout against an earlier commit",
        "Training steps of this checkout's model and of the same architecture at a git ref, alternated step by step.",
        "python benchmarks/speed_vs_ref.py --ref REF --device cpu --model pss_vit_tiny_patch4_32",
    ),
}


def _speed(rec: dict) -> str:
    from pss.bench import format_speed_table

    reports = rec.get("reports") or [rec]
    return "\n\n".join(format_speed_table(r) for r in reports if "results" in r)


def _speed_attn(rec: dict) -> str:
    from pss.bench import format_speed_table

    speed = importlib.import_module("speed")
    ran = [r for r in rec["reports"] if "results" in r]
    return "\n\n".join([speed.side_by_side(rec["reports"]), *(format_speed_table(r) for r in ran)])


def _formatter(kind: str) -> Callable[[dict], str]:
    scripts = {"recipe_study": "recipe_study", "budget_study": "budget_study", "e2e": "cifar10", "pretrain_finetune": "pretrain_finetune",
               "speed_vs_ref": "speed_vs_ref", "token_study": "token_study"}
    if kind in scripts:
        return importlib.import_module(scripts[kind]).to_markdown
    return {"speed": _speed, "speed_attn": _speed_attn}[kind]


def _demote(md: str) -> str:
    """A record's Markdown under the page's headings: its title becomes bold text."""
    lines = md.strip().splitlines()
    return "\n".join(f"**{line.lstrip('# ')}**" if line.startswith("#") else line for line in lines)


def render(results: Path) -> str:
    records: dict[str, list[tuple[Path, dict]]] = {}
    found = [(path, json.loads(path.read_text())) for path in results.glob("*.json")]
    for path, rec in sorted(found, key=lambda x: (str(x[1].get("date", ""))[:10], x[0].name), reverse=True):
        kind = rec.get("kind") or rec.get("benchmark")  # newest first within a study
        if kind in STUDIES:
            records.setdefault(kind, []).append((path, rec))
    lines = ["# Benchmark results", "",
             "Generated by `benchmarks/results_page.py` from the records in this folder (JSON, each with its "
             "device, versions and commit); do not edit by hand. CPU records ran in reduced, labelled set-ups: "
             "only ratios measured side by side in one run mean anything there. What the results mean for the "
             "recipes: [../../docs/findings.md](../../docs/findings.md).", ""]
    lines += ["Studies:", ""] + [f"- [{STUDIES[k][0]}](#{k})" for k in STUDIES if k in records] + [""]
    for kind, (title, what, command) in STUDIES.items():
        if kind not in records:
            continue
        fmt = _formatter(kind)
        lines += [f'<a id="{kind}"></a>', f"## {title}", "", what, "", f"    {command}", "",
                  "Records: " + ", ".join(f"[{p.stem}]({p.name})" for p, _ in records[kind]), ""]
        for path, rec in records[kind]:
            lines += [f"### {path.stem}", "", _demote(fmt(rec)), ""]
    return "\n".join(lines)


def write(results: str | Path) -> Path:
    """(Re)write `results`/README.md from the records there."""
    results = Path(results)
    page = results / PAGE
    page.write_text(render(results))
    return page


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default=str(HERE / "results"))
    print(write(p.parse_args(argv).results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
