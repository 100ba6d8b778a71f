"""`pss train`: train a PSS ViT from a YAML recipe, from scratch or fine-tuning, on 1..N processes.

    pss train --config configs/demo.yaml                         # built-in data, a few CPU minutes
    pss train --config configs/cifar10_pss.yaml --data ~/.cache/pss-data/cifar10 --output runs/c10
    pss train --config demo --set epochs=2 --set optim.lr=1e-3    # shipped recipes by name
    pss train --config configs/vit_base_finetune_pss.yaml --init simmim_pretrain.pth
    pss train --output runs/c10 --resume                          # continue after a crash / kill
    torchrun --nproc_per_node 8 -m pss train --config configs/deit_small_224_pss.yaml --data /imagenet
"""
from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a ViT with a patch sampling schedule (from scratch, fine-tuning, resume, DDP)",
        description=(
            "Train a ViT with a keep-ratio schedule. Writes config.yaml, train_log.jsonl, val_log.jsonl, "
            "summary.json, checkpoint-last.pt, checkpoint-best.pt and model.safetensors into --output. "
            "Multi-GPU: torchrun --nproc_per_node N -m pss train ..."
        ),
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(p)
    p.set_defaults(func=run)


def add_run_arguments(
    p: argparse.ArgumentParser,
    init_help: str = "fine-tune from these weights: a pss checkpoint, a timm state dict (.pth/.safetensors), "
    "or a SimMIM/MAE/BEiT-style encoder checkpoint",
) -> None:
    """The run flags `pss train` and `pss pretrain` share (same names, same behaviour)."""
    p.add_argument("--config", metavar="FILE", help="YAML recipe (or a shipped recipe's name, e.g. demo); "
                   "default: built-in defaults, or the checkpoint's config with --resume")
    p.add_argument("--data", metavar="PATH", help="dataset folder or .tar.gz (sets data.path); default: the recipe's, "
                   "or the built-in synthetic set")
    p.add_argument("--output", metavar="DIR", help="run folder (default: runs/<recipe name>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key, dotted for nested keys (e.g. --set epochs=2 --set optim.lr=1e-3); "
                   "repeatable; the value is parsed as YAML")
    p.add_argument("--init", metavar="CKPT", help=init_help)
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="CKPT",
                   help="continue a run: alone, from <output>/checkpoint-last.pt; or from CKPT")
    p.add_argument("--overwrite", action="store_true", help="start afresh in an output folder that already holds a run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from pss.train import resolve_config, train

    cfg, resume_from = resolve_config(
        args.config, args.overrides, data=args.data, output=args.output, init=args.init, resume=args.resume,
    )
    train(cfg, resume_from=resume_from, overwrite=args.overwrite, quiet=args.quiet)
    return 0
