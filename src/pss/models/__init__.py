"""PSS models: our ViT (registered with timm) and the adapter for existing timm ViTs.

Beside them: `pss.models.convert` maps foreign weights (timm, SimMIM, MAE, BEiT) onto these models
for fine-tuning, and `pss.models.hub.load_model` rebuilds a model trained by pss from its run folder.
"""
from __future__ import annotations

import difflib

import timm
import torch
from torch import nn

from pss.errors import ConfigError, PssError
from pss.models.adapter import attach
from pss.models.attention import ATTN_IMPLS
from pss.models.vit import ARCHS, PssVisionTransformer

__all__ = ["ARCHS", "ATTN_IMPLS", "PssVisionTransformer", "attach", "attention_impl", "build_model",
           "check_model_name", "suggest_model_names"]


def suggest_model_names(name: str) -> str:
    """"did you mean a, b?" from every registered model name (timm's and ours), or a pointer."""
    close = difflib.get_close_matches(name, sorted(set(timm.list_models()) | ARCHS.keys()), n=3, cutoff=0.7)
    return f"did you mean {', '.join(close)}?" if close else "see timm.list_models('*vit*') (or '*deit*', '*eva*')"


def check_model_name(name: str) -> None:
    """A model name timm's registry (with ours registered) does not know fails here, naming close ones."""
    if not timm.is_model(name):
        raise ConfigError(f"unknown model.name {name!r}; {suggest_model_names(name)}")


# Options every timm ViT takes (set from the recipe's model section, not its kwargs)
_STANDARD_KWARGS = ("img_size", "drop_path_rate", "drop_rate")


def build_model(name: str, num_classes: int, img_size: int | None = None, **kwargs) -> nn.Module:
    """Build a PSS model by name: ours (`pss_vit_*`) or any timm ViT / EVA (attached).

    `kwargs` go to `timm.create_model` (depth, embed_dim, drop_path_rate, pos_embed, ...).
    Never downloads anything unless `pretrained=True` is passed explicitly.
    """
    if not timm.is_model(name):
        raise ConfigError(f"unknown model name {name!r}; {suggest_model_names(name)}")
    if img_size is not None:
        kwargs["img_size"] = img_size
    if kwargs.get("pretrained"):
        from pss.hubnet import cache_only_when_offline

        cache_only_when_offline()  # an unreachable hub: the cache at once, not a minute of retries
    try:
        model = timm.create_model(name, num_classes=num_classes, **kwargs)
    except (TypeError, AssertionError) as e:  # an option the architecture does not take, or a value it refuses
        given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if k not in _STANDARD_KWARGS) or "none"
        raise ConfigError(f"model {name!r} does not accept these options ({given}): {str(e) or 'refused by timm'}; "
                          "change or remove them (model.kwargs), or choose a pss_vit_* model") from e
    except PssError:
        raise
    except Exception as e:  # noqa: BLE001  (hub / network / file errors of the weight download)
        if not kwargs.get("pretrained"):
            raise
        raise ConfigError(
            f"could not load the pretrained weights of {name!r} ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
            "Offline? Put them in the Hugging Face cache (HF_HOME) first, or set model.kwargs.pretrained: false "
            "and load a local file with --init PATH"
        ) from e
    return attach(model)


def attention_impl(model: nn.Module, device: torch.device | str | None = None) -> str:
    """The attention implementation `model` runs on `device`: "flex" or "sdpa". Our ViTs (also inside
    DDP, torch.compile or SimMIM wrappers) follow their `attn_impl`; attached timm ViTs use SDPA."""
    ours = next((m for m in model.modules() if isinstance(m, PssVisionTransformer)), None)  # once, at start-up
    return ours.attention_impl(device) if ours is not None else "sdpa"
