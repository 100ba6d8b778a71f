"""`pss pretrain`: SimMIM masked-image-modelling pre-training of a PSS ViT encoder (then `pss train --init`).

    pss pretrain --config configs/cifar10_pretrain_simmim.yaml --output runs/c10_simmim
    pss train --config configs/cifar10_finetune_pss.yaml --init runs/c10_simmim/encoder.safetensors
    pss pretrain --config configs/vit_base_simmim_pretrain.yaml --data /data/imagenet --set epochs=100
    pss pretrain --output runs/c10_simmim --resume                  # continue after a crash / kill
    torchrun --nproc_per_node 8 -m pss pretrain --config configs/vit_base_simmim_pretrain.yaml --data /data/imagenet
"""
from __future__ import annotations

import argparse

from pss.commands.train import add_run_arguments, alias_overrides, say_what_to_do_when_stopped


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="pre-train a ViT encoder with masked image modelling (SimMIM), for `pss train --init`",
        description=(
            "Masked-image-modelling pre-training (SimMIM: mask a share of square regions, predict their pixels, "
            "L1 loss on masked pixels) with pss train's loop, logging, checkpointing, resume and DDP. Writes what "
            "pss train writes into --output, plus encoder.safetensors (load it with pss train --init) and "
            "reconstructions.png. Multi-GPU: torchrun --nproc_per_node N -m pss pretrain ..."
        ),
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(p, init_help="start the encoder from these weights (continue pre-training): a pss checkpoint or "
                      "encoder.safetensors, a timm state dict, or a SimMIM/MAE/BEiT-style checkpoint")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pss.pretrain import pretrain, resolve_pretrain_config

    cfg, resume_from = resolve_pretrain_config(
        args.config, alias_overrides(args) + args.overrides, data=args.data, output=args.output, init=args.init, resume=args.resume,
    )
    say_what_to_do_when_stopped(cfg.output_dir)
    pretrain(cfg, resume_from=resume_from, overwrite=args.overwrite, quiet=args.quiet)
    return 0
