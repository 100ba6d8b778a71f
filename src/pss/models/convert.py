"""Foreign weights onto our models for fine-tuning (`pss train --init`): `load_init_weights`.

The one place where weights from elsewhere are mapped onto our models: our checkpoints, timm state
dicts (.pth / .bin / .safetensors), and SimMIM / MAE / BEiT-style encoder checkpoints. Files are read
weights-only (`pss.checkpoint.load_checkpoint`). The mapping is `RULES`, a small ordered table of
named rules (timm's `checkpoint_filter_fn`, one step per rule): prefix stripping, decoder and mask
token removal, BEiT q/v bias and layer-scale renaming, shared relative-bias copying, the encoder's
norm left out under a fresh fc_norm, position-embedding and relative-bias resizing, a new head when
the number of classes differs. `InitReport.rules` names each rule that fired; on a state dict of the
model itself none does.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from timm.layers import resample_abs_pos_embed, resize_rel_pos_bias_table
from torch import nn

from pss.checkpoint import first_items, fit_problems, load_checkpoint, safetensors_metadata
from pss.runtime import unwrap_model
from pss.errors import CheckpointError

__all__ = ["RULES", "InitReport", "Rule", "convert_state_dict", "load_init_weights", "load_state_dict_file"]

log = logging.getLogger("pss.checkpoint")  # the name these messages have always been logged under

StateDict = dict[str, torch.Tensor]

# Keys that belong to pre-training heads, never to the encoder we fine-tune.
_DROP = re.compile(
    r"^(mask_token|decoder|decoder_\w+|lm_head|head_pretrain|"
    r"(.*\.)?relative_position_index|rel_pos_bias\.relative_position_index)(\.|$)"
)
# Wrapper prefixes added by training code: DDP, torch.compile, SimMIM's encoder, detection backbones.
_PREFIXES = ("module.", "_orig_mod.", "encoder.", "backbone.", "model.")


@dataclass
class InitReport:
    """What `load_init_weights` did, for the log and for tests; `rules`: the `RULES` that fired."""

    source: str
    loaded: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # in the file, not used (decoder, mask token, old head)
    renamed: list[str] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)  # in the model, freshly initialised (head, fc_norm)
    rules: list[str] = field(default_factory=list)  # names of the conversion rules that fired, in order

    def summary(self) -> str:
        s = f"loaded {len(self.loaded)} tensors from {self.source}"
        for what in ("renamed", "resized", "dropped", "new"):
            items = getattr(self, what)
            if items:
                s += f"; {what}: {', '.join(first_items(items, 4))}"
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
        raise CheckpointError(f"{str(path)!r} holds no weight tensors (keys: {', '.join(first_items(list(obj)))})")
    return tensors


# ---------------------------------------------------------------------------------------------
# the rules, in the order `RULES` applies them


def _strip_prefixes(sd: StateDict, model: nn.Module, report: InitReport) -> StateDict | None:
    """`module.` / `_orig_mod.` when every key has it (DDP, torch.compile); `encoder.` / `backbone.` /
    `model.` keeping only the keys under it (an encoder-decoder file: the rest is dropped)."""
    stripped, changed = False, True
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
            changed = stripped = True
    return sd if stripped else None


def _drop_pretraining_keys(sd: StateDict, model: nn.Module, report: InitReport) -> StateDict | None:
    """Keys of pre-training heads and index buffers (`_DROP`): mask token, decoders, lm_head, ..."""
    dropped = [k for k in sd if _DROP.match(k)]
    if not dropped:
        return None
    report.dropped += dropped
    return {k: v for k, v in sd.items() if not _DROP.match(k)}


_Q_BIAS = re.compile(r"^(blocks\.\d+\.attn)\.q_bias$")
_V_BIAS = re.compile(r"^blocks\.\d+\.attn\.v_bias$")
_GAMMA = re.compile(r"^(blocks\.\d+)\.gamma_([12])$")
_SHARED_REL_BIAS = "rel_pos_bias.relative_position_bias_table"


def _beit_key_names(sd: StateDict, model: nn.Module, report: InitReport) -> StateDict | None:
    """BEiT's (and SimMIM's ViT's) names: separate q and v biases, layer scale `gamma_N`, one relative
    position table shared by all blocks."""
    own = model.state_dict()
    out: StateDict = {}
    fired = False
    for k, v in sd.items():
        # Separate q and v biases (k has none) -> one qkv bias.
        m = _Q_BIAS.match(k)
        if m:
            vb = sd.get(f"{m.group(1)}.v_bias")
            if vb is not None and f"{m.group(1)}.qkv.bias" in own:
                out[f"{m.group(1)}.qkv.bias"] = torch.cat([v, torch.zeros_like(v), vb])
                report.renamed.append(f"{m.group(1)}.q_bias/v_bias -> qkv.bias")
                fired = True
                continue
        if _V_BIAS.match(k) and k.replace("v_bias", "qkv.bias") in own and k.replace("v_bias", "q_bias") in sd:
            continue  # merged above
        # Layer scale names.
        m = _GAMMA.match(k)
        if m:
            new = f"{m.group(1)}.ls{m.group(2)}.gamma"
            report.renamed.append(f"{k} -> {new}")
            k, fired = new, True
        # Shared relative position bias -> a copy in every block.
        if k == _SHARED_REL_BIAS:
            targets = [t for t in own if t.endswith("attn.relative_position_bias_table")]
            for t in targets:
                out.setdefault(t, v.clone())
            report.renamed.append(f"{k} -> {len(targets)} x blocks.N.attn.relative_position_bias_table")
            fired = True
            continue
        out[k] = v
    return out if fired else None


def _drop_norm_for_fc_norm(sd: StateDict, model: nn.Module, report: InitReport) -> StateDict | None:
    """MAE fine-tuning with average pooling uses a fresh fc_norm; the encoder's final norm is unused."""
    own = model.state_dict()
    if not any(k.startswith("fc_norm.") for k in own) or any(k.startswith("norm.") for k in own):
        return None
    unused = [k for k in sd if k.startswith("norm.")]
    if not unused:
        return None
    report.dropped += unused
    return {k: v for k, v in sd.items() if not k.startswith("norm.")}


def _resize_pos_embed(sd: StateDict, model: nn.Module, report: InitReport) -> StateDict | None:
    """The absolute position embedding resampled when the patch grid differs (e.g. pre-trained at
    192 px, fine-tuned at 224); the prefix tokens' positions stay."""
    own = model.state_dict()
    if "pos_embed" not in sd or "pos_embed" not in own or sd["pos_embed"].shape == own["pos_embed"].shape:
        return None
    out = {**sd, "pos_embed": _resampled_pos_embed(sd["pos_embed"], own["pos_embed"], model)}
    report.resized.append("pos_embed")
    return out


def _resampled_pos_embed(pos: torch.Tensor, target: torch.Tensor, model: nn.Module) -> torch.Tensor:
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


def _resize_rel_pos_bias(sd: StateDict, model: nn.Module, report: InitReport) -> StateDict | None:
    """Relative position bias tables (same number of heads) resized when the patch grid differs."""
    own = model.state_dict()
    out = dict(sd)
    resized = []
    for k in [k for k in sd if k.endswith("relative_position_bias_table")]:
        if k in own and sd[k].shape != own[k].shape and sd[k].shape[1] == own[k].shape[1]:
            grid = tuple(unwrap_model(model).patch_embed.grid_size)
            try:
                out[k] = resize_rel_pos_bias_table(sd[k], new_window_size=grid, new_bias_shape=tuple(own[k].shape))
            except (ValueError, AssertionError) as e:
                raise CheckpointError(f"cannot resize {k} from {tuple(sd[k].shape)} to {tuple(own[k].shape)}: {e}") from None
            resized.append(k)
    if not resized:
        return None
    report.resized += resized
    return out


def _new_head(sd: StateDict, model: nn.Module, report: InitReport) -> StateDict | None:
    """A different number of classes (or no head in the model): the file's head is dropped and the
    model's head starts fresh."""
    own = model.state_dict()
    stale = [k for k in sd if k.startswith("head.") and (k not in own or sd[k].shape != own[k].shape)]
    if not stale:
        return None
    report.dropped += [f"{k} {tuple(sd[k].shape)}" for k in stale]
    return {k: v for k, v in sd.items() if k not in stale}


@dataclass(frozen=True)
class Rule:
    """One named step of the conversion. `apply(state dict, model, report)` returns the converted
    state dict (a new dict; its input stays as it was) and notes in the report what it dropped,
    renamed or resized; or it returns None, touching nothing, when the input is not what it is for."""

    name: str
    apply: Callable[[StateDict, nn.Module, InitReport], StateDict | None]


# The conversion, in order (timm's `checkpoint_filter_fn`, as a table). No rule fires on a state
# dict of the model itself.
RULES: tuple[Rule, ...] = (
    Rule("strip wrapper prefixes", _strip_prefixes),  # module. _orig_mod. encoder. backbone. model.
    Rule("drop pre-training keys", _drop_pretraining_keys),  # mask token, decoder, lm_head, position index
    Rule("BEiT / SimMIM key names", _beit_key_names),  # q/v bias -> qkv.bias; gamma_N -> lsN.gamma; shared rel bias
    Rule("drop norm for fc_norm", _drop_norm_for_fc_norm),  # MAE average pooling: fresh fc_norm
    Rule("resize pos embed", _resize_pos_embed),  # absolute positions to the model's patch grid
    Rule("resize relative position bias", _resize_rel_pos_bias),  # relative-bias tables to the grid
    Rule("new head", _new_head),  # another number of classes: the head starts fresh
)

# In the model, not needed from the file: freshly initialised (`InitReport.new`).
_NEW_OK = ("head.", "fc_norm.")


def convert_state_dict(sd: dict[str, torch.Tensor], model: nn.Module, source: str = "state dict") -> tuple[dict[str, torch.Tensor], InitReport]:
    """Map a foreign encoder state dict onto `model`'s parameter names and shapes: the `RULES` in
    order, each named in `report.rules` when it fires.

    Returns (state dict ready for `model.load_state_dict(strict=False)`, report). Raises
    CheckpointError naming keys and shapes when the weights cannot fit.
    """
    report = InitReport(source)
    own = model.state_dict()
    out = dict(sd)
    for rule in RULES:
        converted = rule.apply(out, model, report)
        if converted is not None:
            out = converted
            report.rules.append(rule.name)

    problems = fit_problems(model, out, allow_missing=_NEW_OK)
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
