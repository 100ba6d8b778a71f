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
    p.add_argument("--data", metavar="PATH", help="dataset folder, .tar.gz, or a Hugging Face dataset: hf:NAME[:CONFIG], "
                   "a save_to_disk folder, parquet files (sets data.path); default: the recipe's, or the built-in set")
    p.add_argument("--output", "-o", metavar="DIR", help="run folder (default: runs/<recipe name>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key, dotted for nested keys (e.g. --set epochs=2 --set optim.lr=1e-3); "
                   "repeatable; the value is parsed as YAML; applied after the timm-style flags below")
    timm_flags = p.add_argument_group("timm-style shortcuts (each one is a --set)")
    for flag, key, kind, help_ in ALIASES:
        if kind == "flag":
            timm_flags.add_argument(flag, dest=f"alias_{key}", action="store_true", default=None,
                                    help=f"--set {key}=true: {help_}")
        elif kind == "opt":  # --amp alone means auto (mixed precision where it pays), --amp bf16 picks one
            timm_flags.add_argument(flag, dest=f"alias_{key}", nargs="?", const="auto", default=None, metavar="MODE",
                                    help=f"--set {key}=MODE: {help_}")
        else:
            timm_flags.add_argument(flag, dest=f"alias_{key}", default=None, metavar=kind, help=f"--set {key}={kind}: {help_}")
    p.set_defaults(unknown_hint=unknown_flag_hint)
    p.add_argument("--init", metavar="CKPT", help=init_help)
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="CKPT",
                   help="continue a run: alone, from <output>/checkpoint-last.pt; or from CKPT")
    p.add_argument("--overwrite", action="store_true", help="start afresh in an output folder that already holds a run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# timm train.py habits: (flag, recipe key, value kind, help). Each becomes `--set key=value`.
ALIASES = [
    ("--model", "model.name", "NAME", "a pss_vit_* or timm ViT / DeiT / EVA name"),
    ("--epochs", "epochs", "N", "training epochs"),
    ("--batch-size", "batch_size", "N", "global batch per optimizer step"),
    ("--lr", "optim.lr", "LR", "peak learning rate (absolute; wins over optim.base_lr)"),
    ("--amp", "amp", "opt", "auto (bf16 on CUDA, fp16 where the GPU lacks bf16, fp32 on CPU), bf16, fp16 or fp32"),
    ("--compile", "compile", "flag", "torch.compile the model"),
    ("--pretrained", "model.kwargs.pretrained", "flag", "start from timm's pretrained weights (downloads)"),
]

# More timm train.py flags, answered with the --set that does the same (unknown flags only).
TIMM_KEYS = {
    "weight-decay": "optim.weight_decay", "opt": "optim.opt", "momentum": "optim.momentum",
    "clip-grad": "optim.clip_grad", "layer-decay": "optim.layer_decay", "sched": "lr_sched.name",
    "warmup-epochs": "lr_sched.warmup_epochs", "warmup-lr": "lr_sched.warmup_lr", "min-lr": "lr_sched.min_lr",
    "cooldown-epochs": "lr_sched.cooldown_epochs", "drop-path": "model.drop_path_rate", "drop": "model.drop_rate",
    "smoothing": "label_smoothing", "mixup": "mixup.mixup_alpha", "cutmix": "mixup.cutmix_alpha",
    "model-ema": "ema.enabled", "model-ema-decay": "ema.decay", "workers": "data.num_workers", "j": "data.num_workers",
    "img-size": "data.img_size", "num-classes": "model.num_classes", "grad-accum-steps": "accum_steps",
    "log-interval": "log_interval", "seed": "seed", "device": "device", "val-split": "data.val_split",
    "aa": "data.auto_augment", "reprob": "data.re_prob", "log-wandb": "logging.wandb",
}


def alias_overrides(args: argparse.Namespace) -> list[str]:
    """The `--set` items the timm-style flags stand for, in ALIASES order."""
    out = []
    for _, key, _, _ in ALIASES:
        value = getattr(args, f"alias_{key}", None)
        if value is not None:
            out.append(f"{key}={'true' if value is True else value}")
    return out


def _config_keys() -> list[str]:
    from pss.config import TrainConfig, config_to_dict

    def walk(d: dict, prefix: str = "") -> list[str]:
        keys = []
        for k, v in d.items():
            if isinstance(v, dict) and k not in ("schedule", "kwargs"):
                keys += walk(v, f"{prefix}{k}.")
            else:
                keys.append(prefix + k)
        return keys

    return walk(config_to_dict(TrainConfig()))


def unknown_flag_hint(unknown: list[str]) -> str:
    """For each unknown `--flag [value]`: the `--set key=value` that does it (or where to look)."""
    import difflib

    keys = _config_keys()
    leaves = {k.rsplit(".", 1)[-1]: k for k in keys}
    hints = []
    i = 0
    while i < len(unknown):
        item = unknown[i]
        i += 1
        if not item.startswith("-"):
            continue
        name, eq, value = item.lstrip("-").partition("=")
        if not eq:
            value = "VALUE"
            if i < len(unknown) and not unknown[i].startswith("-"):
                value = unknown[i]
                i += 1
        under = name.replace("-", "_")
        key = TIMM_KEYS.get(name) or (under if under in keys else None) or leaves.get(under)
        if key is None:
            close = difflib.get_close_matches(under, list(leaves), n=1)
            key = leaves[close[0]] if close else None
        if key is None:
            hints.append(f"{item}: no such setting; `pss train --help` and configs/*.yaml list them")
            continue
        if value == "VALUE" and (key.endswith(("enabled", "compile", "pretrained", "wandb")) or key == "logging.wandb"):
            value = "true"
        hints.append(f"{item} -> --set {key}={value}")
    return "\n  ".join(hints)


def say_what_to_do_when_stopped(output_dir: str | None) -> None:
    """The "interrupted" line of a stopped run names its next step (pss.runfolder.recovery_hint)."""
    from pathlib import Path

    from pss import interrupt
    from pss.runfolder import recovery_hint

    interrupt.recovery_hint = lambda: recovery_hint(Path(output_dir or "runs/train").expanduser())


def run(args: argparse.Namespace) -> int:
    from pss.resolve import resolve_config
    from pss.train import train

    cfg, resume_from = resolve_config(
        args.config, alias_overrides(args) + args.overrides, data=args.data, output=args.output, init=args.init,
        resume=args.resume,
    )
    say_what_to_do_when_stopped(cfg.output_dir)
    train(cfg, resume_from=resume_from, overwrite=args.overwrite, quiet=args.quiet)
    return 0
