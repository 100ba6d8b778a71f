"""Write benchmarks/results/README.md from the records beside it: one section per study, each with the
command that makes its records, the records it comes from and each record's own Markdown, as the script
that wrote it left it (`pss.study.write_record`: NAME.json, and NAME.md beside it). It reads the records
only: it imports no benchmark script and nothing of pss, so a record shows here exactly as it was
written, and the page is the one place that collects them. Recording scripts call `write` after
recording; by hand:

    python benchmarks/results_page.py [--results benchmarks/results]

The page is generated: edit the scripts (or the descriptions below), never the page or a record.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent

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
    "gpu_proof": (
        "The GPU proof",
        "Step-time ratios per keep ratio for ViT-S and ViT-B, the data loader, and a short CIFAR-10 comparison "
        "(full, recommended PSS, equal-time baseline), in stages that resume.",
        "python benchmarks/gpu_proof.py --device cuda --data data/cifar10-jpg.tar.gz",
    ),
    "dial_vs_merge": (
        "The inference dial: dropping tokens against merging them (ToMe)",
        "The full baseline and the recommended model of each seed swept over keep ratios (each model at its default "
        "rule) and ToMe merge rates on one measured images/s axis; what they mean: docs/dial.md.",
        "python benchmarks/dial_vs_merge.py --baseline RUN_S0 RUN_S1 --pss RUN_S0 RUN_S1 --output runs/dial_vs_merge",
    ),
    "inference_select": (
        "The inference dial: which rule keeps which patches",
        "Each run's best checkpoint on held-out images at keep ratios 0.8 to 0.2 with every selection rule; the "
        "protocol behind each training rule's default rule at inference (docs/dial.md).",
        "python benchmarks/inference_select.py RUN [RUN ...] --output runs/inference_select",
    ),
    "fixed_cost": (
        "The fixed per-step cost",
        "The part of a training step that does not shrink with the tokens (clipping, optimizer, EMA), before and "
        "after its cuts, side by side in one process with interleaved repeats.",
        "OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/fixed_cost.py --repeats 5",
    ),
    "data_sides": (
        "A lower training side in the input pipeline",
        "The recipe's training loader on a JPEG folder at the full side and at a lower one (decoded at it through "
        "JPEG draft and augmented at it in the workers), repeats alternating the order: what the resolution lever "
        "saves before the model.",
        "OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/data_sides.py --data JPEG_FOLDER --repeats 4",
    ),
    "preflight_check": (
        "How good the pre-flight is",
        "The pre-flight's predicted wall-clock ratio against the realised one, with a slow and a fast loader, and "
        "`budget_cost: measured` with the slow one (docs/budgets.md).",
        "OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/preflight_check.py --data PATH",
    ),
}


def _markdown(path: Path) -> str:
    """A record's Markdown (NAME.md beside NAME.json); a record without one is refused in one line."""
    md = path.with_suffix(".md")
    if not md.is_file():
        raise SystemExit(f"error: record {path} has no {md.name} beside it: write records with "
                         "pss.study.write_record (its .json and .md), never by hand")
    return md.read_text()


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
             "Generated by `benchmarks/results_page.py` from the records in this folder (each a JSON with its "
             "device, versions and commit, and the Markdown its script wrote beside it, shown below as written); "
             "do not edit by hand. CPU records ran in reduced, labelled set-ups: "
             "only ratios measured side by side in one run mean anything there. What the results mean for the "
             "recipes: [../../docs/findings.md](../../docs/findings.md).", ""]
    lines += ["Studies:", ""] + [f"- [{STUDIES[k][0]}](#{k})" for k in STUDIES if k in records] + [""]
    for kind, (title, what, command) in STUDIES.items():
        if kind not in records:
            continue
        lines += [f'<a id="{kind}"></a>', f"## {title}", "", what, "", f"    {command}", "",
                  "Records: " + ", ".join(f"[{p.stem}]({p.name})" for p, _ in records[kind]), ""]
        for path, rec in records[kind]:
            lines += [f"### {path.stem}", "", _demote(_markdown(path)), ""]
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
