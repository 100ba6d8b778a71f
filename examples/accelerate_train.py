"""PSS in a Hugging Face Accelerate loop: a timm ViT, `pss.attach`, `pss.KeepRatioScheduler`.

    pip install -e ".[accelerate]"                                  # in a clone of pss
    python examples/accelerate_train.py --epochs 3                  # CPU or one GPU
    accelerate launch examples/accelerate_train.py --epochs 10      # any accelerate config (DDP, bf16, ...)
    python examples/accelerate_train.py --epochs 4 --resume         # continue from <output>/state

Random images stand in for your data, so it runs anywhere in seconds. The PSS lines are marked.
Attach before `accelerator.prepare` (it may wrap the model in DDP or compile it); the scheduler
sets the same keep ratio on every process because it is a function of the step. The state (model,
optimizer, RNG, keep-ratio scheduler) is saved after every epoch; `--resume` loads it and continues
with the next epoch, so an interrupted run ends where an uninterrupted one would.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, TensorDataset

import pss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3, help="1.5x the epochs you would train at every token")
    # the recommended recipe: a fixed 0.4 at random (over 1.5x the epochs); the paper's: cyclic:low=0.2,high=1.0
    # with --select magnitude
    ap.add_argument("--schedule", default="0.4", help="keep-ratio schedule spec (default 0.4, fixed)")
    ap.add_argument("--select", default="random", help="selection rule (default random)")
    ap.add_argument("--output", default="runs/accelerate", help="folder for state/ and checkpoint.pt")
    ap.add_argument("--resume", action="store_true", help="continue from <output>/state (saved after every epoch)")
    ap.add_argument("--stop-after", type=int, default=None, metavar="N", help="stop after N epochs (as if interrupted)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    accelerator = Accelerator()
    set_seed(args.seed)  # the same initial weights on every process and every run
    out, state = Path(args.output), Path(args.output) / "state"
    g = torch.Generator().manual_seed(0)
    train_set = TensorDataset(torch.randn(64, 3, 32, 32, generator=g), torch.randint(0, 10, (64,), generator=g))
    val_set = TensorDataset(torch.randn(32, 3, 32, 32, generator=g), torch.randint(0, 10, (32,), generator=g))
    train_loader = DataLoader(train_set, batch_size=16, shuffle=True)
    val_loader = DataLoader(val_set, batch_size=16)
    model = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=4, depth=2, num_classes=10)
    model = pss.attach(model)  # PSS: before prepare()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model, optimizer, train_loader, val_loader = accelerator.prepare(model, optimizer, train_loader, val_loader)
    # PSS: steps per epoch of *this* process's loader (sharded under DDP)
    keep_sched = pss.KeepRatioScheduler(model, args.schedule, steps_per_epoch=len(train_loader), epochs=args.epochs,
                                        select=args.select)
    accelerator.register_for_checkpointing(keep_sched)  # PSS: saved / restored by save_state / load_state

    start = 0
    if args.resume:
        if not (state / "epochs_done.json").is_file():
            raise SystemExit(f"--resume: no saved state in {state}; run without --resume first")
        accelerator.load_state(str(state))  # model, optimizer, RNG and the keep-ratio scheduler, as saved
        start = json.loads((state / "epochs_done.json").read_text())["epochs_done"]
        accelerator.print(f"resuming after epoch {start} (keep-ratio scheduler at step {keep_sched.last_step})")

    eval_tokens: list[int] = []  # sequence length at evaluation (prefix + patches), to show the eval rule
    pss.samplers(model)[0].register_forward_hook(lambda m, i, out: None if m.training else eval_tokens.append(out.shape[1]))
    for epoch in range(start, args.epochs):
        model.train()
        for images, targets in train_loader:
            loss = F.cross_entropy(model(images), targets)
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            keep_sched.step()  # PSS
        model.eval()  # every token at evaluation
        correct = total = 0
        with torch.no_grad():
            for images, targets in val_loader:
                preds = accelerator.gather_for_metrics(model(images).argmax(1))
                correct += (preds == accelerator.gather_for_metrics(targets)).sum().item()
                total += preds.numel()
        accelerator.print(f"epoch {epoch + 1}/{args.epochs}: loss {loss.item():.3f} keep ratio {keep_sched.keep_ratio} "
                          f"top-1 {correct / total:.3f} eval tokens {eval_tokens[-1]}")
        accelerator.save_state(str(state))  # model, optimizer, RNG, and the keep-ratio scheduler
        if accelerator.is_main_process:
            (state / "epochs_done.json").write_text(json.dumps({"epochs_done": epoch + 1}))
        if args.stop_after is not None and epoch + 1 >= args.stop_after:
            return
    if accelerator.is_main_process:
        torch.save({"model": accelerator.unwrap_model(model).state_dict(), "keep_sched": keep_sched.state_dict()},
                   out / "checkpoint.pt")


if __name__ == "__main__":
    main()
