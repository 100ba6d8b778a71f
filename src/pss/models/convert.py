"""Foreign weights onto our models for fine-tuning (`pss train --init`): `load_init_weights`.

The one place where weights from elsewhere are mapped onto our models: our checkpoints, timm state
dicts (.pth / .bin / .safetensors), and SimMIM / MAE / BEiT-style encoder checkpoints (prefix
stripping, decoder removal, BEiT q/v bias and layer-scale renaming, shared relative-bias copying,
position-embedding and relative-bias resizing, new head when the number of classes differs).
Files are read weights-only (`pss.checkpoint.load_checkpoint`).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pss.checkpoint import _cap, _fit_problems, load_checkpoint, safetensors_metadata, unwrap_model
from pss.errors import CheckpointError

__all__ = ["InitReport", "convert_state_dict", "load_init_weights", "load_state_dict_file"]

log = logging.getLogger("pss.checkpoint")  # the logger these messages always came from

# Keys that belong to pre-training heads, never to the encoder we fine-tune.
_DROP = re.compile(
    r"^(mask_token|decoder|decoder_\w+|lm_head|head_pretrain|"
    r"(.*\.)?relative_position_index|rel_pos_bias\.relative_position_index)(\.|$)"
)
# Wrapper prefixes added by training code: DDP, torch.compile, SimMIM's encoder, detection backbones.
_PREFIXES = ("module.", "_orig_mod.", "encoder.", "backbone.", "model.")


@dataclass
class InitReport:
    """What `load_init_weights` did, for the log and for tests."""

    source: str
    loaded: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # in the file, not used (decoder, mask token, old head)
    renamed: list[str] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)  # in the model, freshly initialised (head, fc_norm)

    def summary(self) -> str:
        s = f"loaded {len(self.loaded)} tensors from {self.source}"
        for what in ("renamed", "resized", "dropped", "new"):
            items = getattr(self, what)
            if items:
                s += f"; {what}: {', '.join(_cap(items, 4))}"
        return s


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The weights in a file: our checkpoint (its `model`), a timm / torchvision state dict
    (.pth / .pt / .bin / .safetensors), or a research checkpoint wrapping them in `model` /
    `state_dict` / `module`. Weights-only: never unpickles code."""
    obj = load_checkpoint(path)
    for key in ("model", "state_dict", "module", "model_state"):
        inner = obj.get(key)
        if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            obj = inner
            break
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{str(path)!r} holds no weight tensors (keys: {', '.join(_cap(list(obj)))})")
    return tensors


def _strip_prefixes(sd: dict[str, torch.Tensor], report: InitReport) -> dict[str, torch.Tensor]:
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            hits = [k for k in sd if k.startswith(p)]
            if not hits:
                continue
            if p in ("encoder.", "backbone.", "model."):
                # An encoder-decoder file (SimMIM: encoder.* + decoder.*): keep the encoder part.
                report.dropped += [k for k in sd if not k.startswith(p)]
                sd = {k[len(p) :]: v for k, v in sd.items() if k.startswith(p)}
            elif len(hits) == len(sd):
                sd = {k[len(p) :]: v for k, v in sd.items()}
            else:
                continue
            changed = True
    return sd


def convert_state_dict(sd: dict[str, torch.Tensor], model: nn.Module, source: str = "state dict") -> tuple[dict[str, torch.Tensor], InitReport]:
    """Map a foreign encoder state dict onto `model`'s parameter names and shapes (see module docs).

    Returns (state dict ready for `model.load_state_dict(strict=False)`, report). Raises
    CheckpointError naming keys and shapes when the weights cannot fit.
    """
    report = InitReport(source)
    own = model.state_dict()
    sd = _strip_prefixes(dict(sd), report)

    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if _DROP.match(k):
            report.dropped.append(k)
            continue
        # BEiT / SimMIM: separate q and v biases (k has none) -> one qkv bias.
        m = re.match(r"^(blocks\.\d+\.attn)\.q_bias$", k)
        if m:
            vb = sd.get(f"{m.group(1)}.v_bias")
            if vb is not None and f"{m.group(1)}.qkv.bias" in own:
                out[f"{m.group(1)}.qkv.bias"] = torch.cat([v, torch.zeros_like(v), vb])
                report.renamed.append(f"{m.group(1)}.q_bias/v_bias -> qkv.bias")
                continue
        if re.match(r"^blocks\.\d+\.attn\.v_bias$", k) and k.replace("v_bias", "qkv.bias") in own and k.replace("v_bias", "q_bias") in sd:
            continue  # merged above
        # BEiT layer scale names.
        m = re.match(r"^(blocks\.\d+)\.gamma_([12])$", k)
        if m:
            new = f"{m.group(1)}.ls{m.group(2)}.gamma"
            report.renamed.append(f"{k} -> {new}")
            k = new
        # BEiT shared relative position bias -> a copy in every block.
        if k == "rel_pos_bias.relative_position_bias_table":
            targets = [t for t in own if t.endswith("attn.relative_position_bias_table")]
            for t in targets:
                out.setdefault(t, v.clone())
            report.renamed.append(f"{k} -> {len(targets)} x blocks.N.attn.relative_position_bias_table")
            continue
        out[k] = v

    # MAE fine-tuning with average pooling uses a fresh fc_norm; the encoder's final norm is unused.
    if any(k.startswith("fc_norm.") for k in own) and not any(k.startswith("norm.") for k in own):
        for k in [k for k in out if k.startswith("norm.")]:
            report.dropped.append(k)
            del out[k]

    # Resize position terms when the patch grid differs (e.g. pre-trained at 192 px, fine-tuned at 224).
    if "pos_embed" in out and "pos_embed" in own and out["pos_embed"].shape != own["pos_embed"].shape:
        out["pos_embed"] = _resize_pos_embed(out["pos_embed"], own["pos_embed"], model)
        report.resized.append("pos_embed")
    for k in [k for k in out if k.endswith("relative_position_bias_table")]:
        if k in own and out[k].shape != own[k].shape and out[k].shape[1] == own[k].shape[1]:
            from timm.layers import resize_rel_pos_bias_table

            grid = tuple(unwrap_model(model).patch_embed.grid_size)
            try:
                out[k] = resize_rel_pos_bias_table(out[k], new_window_size=grid, new_bias_shape=tuple(own[k].shape))
            except (ValueError, AssertionError) as e:
                raise CheckpointError(f"cannot resize {k} from {tuple(out[k].shape)} to {tuple(own[k].shape)}: {e}") from None
            report.resized.append(k)

    # A different number of classes (or no head in the file): the head starts fresh.
    for k in [k for k in out if k.startswith("head.")]:
        if k not in own or out[k].shape != own[k].shape:
            report.dropped.append(f"{k} {tuple(out[k].shape)}")
            del out[k]

    new_ok = ("head.", "fc_norm.")
    problems = _fit_problems(model, out, allow_missing=new_ok)
    if problems:
        hint = ""
        if "pos_embed" in out and "pos_embed" not in own:
            hint = " (the checkpoint has absolute position embeddings: build the model with model.kwargs.pos_embed=learned)"
        elif any(k.endswith("relative_position_bias_table") for k in out) and not any(k.endswith("relative_position_bias_table") for k in own):
            hint = " (the checkpoint has relative position bias: build the model with model.kwargs.pos_embed=rel_bias)"
        raise CheckpointError(f"weights in {source} do not fit the model: {problems}{hint}")
    report.loaded = list(out)
    report.new = [k for k in own if k not in out]
    return out, report


def _resize_pos_embed(pos: torch.Tensor, target: torch.Tensor, model: nn.Module) -> torch.Tensor:
    from timm.layers import resample_abs_pos_embed

    bare = unwrap_model(model)
    prefix = int(getattr(bare, "num_prefix_tokens", 1))
    n_old = pos.shape[1] - prefix
    side = int(round(n_old**0.5))
    if side * side != n_old or pos.shape[2] != target.shape[2]:
        raise CheckpointError(
            f"cannot resize pos_embed: checkpoint {tuple(pos.shape)} vs model {tuple(target.shape)} "
            f"({prefix} prefix tokens; only square grids of the same width can be resized)"
        )
    grid = list(bare.patch_embed.grid_size)
    return resample_abs_pos_embed(pos, new_size=grid, old_size=[side, side], num_prefix_tokens=prefix)


def _pretrained_architecture(path: str | Path) -> dict[str, Any] | None:
    """The architecture an `encoder.safetensors` of `pss pretrain` records in its metadata, if any."""
    path = Path(path).expanduser()
    if path.suffix != ".safetensors":
        return None
    try:
        arch = safetensors_metadata(path).get("pss_encoder")
    except Exception:  # unreadable metadata: the hint is optional
        return None
    return arch if isinstance(arch, dict) else None


def load_init_weights(model: nn.Module, path: str | Path) -> InitReport:
    """Initialise `model` (in place) from a checkpoint file for fine-tuning; see `convert_state_dict`."""
    sd = load_state_dict_file(path)
    bare = unwrap_model(model)
    try:
        out, report = convert_state_dict(sd, bare, source=str(path))
    except CheckpointError as e:
        arch = _pretrained_architecture(path)
        if not arch:
            raise
        raise CheckpointError(
            f"{e}. The file was pre-trained (pss pretrain) as {arch}: fine-tune the same architecture "
            "(model.name and model.kwargs; global_pool may differ)"
        ) from None
    bare.load_state_dict(out, strict=False)
    log.info("init: %s", report.summary())
    return report
