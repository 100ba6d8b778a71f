"""Training configuration: recipes as YAML files, `--set` overrides, and the typed sections they fill.

    cfg = load_config("configs/demo.yaml", overrides=["epochs=2", "optim.lr=1e-3"])
    save_config(cfg, "runs/demo/config.yaml")          # the resolved config, as written to every run

The sections are small dataclasses validated on construction (`pss.settings`, re-exported here). Every
key is checked: an unknown key is an error naming the key and the valid keys at that level, and
impossible values are refused here, before any data is read or model built. Overrides are
`dotted.key=value` strings; the value is parsed as YAML, as a recipe is (`parse_yaml`: so `2`, `1e-3`,
`15e-1`, `null`, `[1, 2]`, `{depth: 2}` all work; aliases may not expand past MAX_YAML_VALUES values).
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from pss.bounds import RecursiveStructure, measure
from pss.budget_spec import CostSpec
from pss.errors import ConfigError, path_problem
from pss.schedule import Schedule, from_dict as schedule_from_dict
from pss.settings import (
    GLYPH_IMG_SIZE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataConfig,
    EmaConfig,
    EvalConfig,
    LoggingConfig,
    TASK_CONFIGS,
    LRSchedConfig,
    MimConfig,
    MixupConfig,
    ModelConfig,
    OptimConfig,
    PretrainConfig,
    TrainConfig,
    config_class,
    tasks_of,
)

__all__ = [
    "GLYPH_IMG_SIZE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TASK_CONFIGS",
    "DataConfig",
    "EmaConfig",
    "EvalConfig",
    "LRSchedConfig",
    "LoggingConfig",
    "MimConfig",
    "MixupConfig",
    "ModelConfig",
    "OptimConfig",
    "PretrainConfig",
    "TrainConfig",
    "apply_overrides",
    "build_config",
    "config_class",
    "config_from_dict",
    "config_to_dict",
    "diff_configs",
    "find_recipe",
    "load_config",
    "load_yaml",
    "parse_kwargs",
    "parse_yaml",
    "save_config",
    "tasks_of",
]


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


# ---------------------------------------------------------------------------------------------
# dict <-> dataclass


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`, converting the harmless cases (int -> float,
    "5e-4" -> 5e-4, which YAML 1.1 reads as a string); raise ConfigError otherwise."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            _check(type(None) in args, f"{key} must not be null")
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} fits none of {_type_name(tp)}")
    if tp is Any:
        return value
    if isinstance(tp, type) and issubclass(tp, Schedule):
        try:  # any form pss.schedule.from_dict accepts; errors name the key
            return schedule_from_dict(value)
        except ConfigError as e:
            raise ConfigError(f"{key}: {e}") from None
    if tp is CostSpec:
        return CostSpec.parse(value)  # its refusal names budget_cost and the forms
    if dataclasses.is_dataclass(tp):
        return build_config(tp, value, key)
    _check(value is not None, f"{key} must not be null (expected {_type_name(tp)})")
    if tp is bool:
        _check(isinstance(value, bool), f"{key} must be true or false, got {value!r}")
        return value
    if tp is int:
        _check(isinstance(value, int) and not isinstance(value, bool), f"{key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{key} must be a number, got {value!r}") from None
        _check(isinstance(value, (int, float)) and not isinstance(value, bool), f"{key} must be a number, got {value!r}")
        _check(math.isfinite(value), f"{key} must be finite, got {value!r}")
        return float(value)
    if tp is str:
        _check(isinstance(value, str), f"{key} must be a string, got {value!r}")
        return value
    if origin in (list, tuple) or tp in (list, tuple):
        _check(isinstance(value, (list, tuple)), f"{key} must be a list, got {value!r}")
        args = typing.get_args(tp)
        item = args[0] if args else Any
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        _check(isinstance(value, dict), f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if isinstance(tp, type):
        _check(isinstance(value, tp), f"{key} must be {_type_name(tp)}, got {value!r}")
    return value


def build_config(cls: type, d: Any, prefix: str = "") -> Any:
    """An instance of the dataclass `cls` from a mapping: every key checked against its fields (an unknown
    key is named with the valid ones), every value against its annotation (`prefix`: where in the recipe)."""
    where = f" under {prefix}" if prefix else ""
    if isinstance(d, cls):
        return d
    _check(isinstance(d, dict), f"{prefix or 'the config'} must be a mapping, got {d!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in names:
            close = difflib.get_close_matches(str(k), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown config key {key!r}{hint}; valid keys{where}: {', '.join(names)}")
        kwargs[k] = _coerce(v, hints[k], key)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid {prefix or 'config'}: {e}") from e


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """Build and validate a TrainConfig (or, for `task: simmim`, a PretrainConfig: `TASK_CONFIGS`) from a
    plain (YAML-loaded) mapping."""
    return build_config(config_class(d.get("task") if isinstance(d, dict) else None), d)


def _plain(v: Any) -> Any:
    if isinstance(v, Schedule):
        return v.to_dict()
    if isinstance(v, CostSpec):
        return str(v)  # as a recipe writes it
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _plain(getattr(v, f.name)) for f in dataclasses.fields(v) if f.init}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, Path):
        return str(v)
    return v


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain nested dict (YAML / JSON / `torch.load(weights_only=True)` safe); round-trips."""
    return _plain(cfg)


# ---------------------------------------------------------------------------------------------
# YAML files and --set overrides


# Bounds on what one YAML document may hold. Recipes have a few hundred values; aliases (`*a`) let a
# kilobyte name billions of them ("billion laughs"), which every later step (checks, copies, messages)
# would walk one by one, so the document is measured with each alias counted in full before it is built.
MAX_YAML_BYTES = 1 << 20
MAX_YAML_VALUES = 100_000


def _yaml_parts(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (plain YAML keeps the last), and a
    document that expands (aliases counted in full) to more than MAX_YAML_VALUES values."""

    def construct_document(self, node: yaml.Node) -> Any:
        try:
            size, _ = measure(node, _yaml_parts, MAX_YAML_VALUES)
        except RecursiveStructure:
            raise ConfigError("an alias refers to the value it is part of (a recursive structure); write the value "
                              "out") from None
        if size > MAX_YAML_VALUES:
            raise ConfigError(f"it expands to more than {MAX_YAML_VALUES} values (aliases counted in full); "
                              "a recipe holds a few hundred: write the settings out")
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(
                    f"key {key!r} is given twice (line {key_node.start_mark.line + 1}); keep one of them"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.1 (PyYAML) reads an exponent only with a dot and a sign (`1.0e-3`): `6e-1`, `15e-1` and `1.5e3`
# would stay strings, and a setting typed Any (budget_epochs) would then see text where the user wrote a
# number. YAML 1.2 and JSON read every exponent form as a float; so do recipes and --set values.
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"))


# The shipped recipes: configs/ of a checkout (an editable install), else the copy a wheel carries
# as pss/recipes/ (see pyproject.toml).
_CHECKOUT_RECIPES = Path(__file__).resolve().parents[2] / "configs"
_PACKAGED_RECIPES = Path(__file__).resolve().parent / "recipes"
RECIPES_DIR = _PACKAGED_RECIPES if not _CHECKOUT_RECIPES.is_dir() and _PACKAGED_RECIPES.is_dir() else _CHECKOUT_RECIPES


def find_recipe(name: str | Path) -> Path:
    """A recipe path, or a bare name of a shipped recipe (`demo` -> configs/demo.yaml)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    for cand in (RECIPES_DIR / f"{name}", RECIPES_DIR / f"{name}.yaml"):
        if cand.is_file():
            return cand
    if path.exists():  # a folder, a device, ...: say what it is
        raise ConfigError(f"config file {str(name)!r} {path_problem(path)}; pass a YAML recipe, e.g. configs/demo.yaml")
    shipped = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")) if RECIPES_DIR.is_dir() else []
    hint = f"; shipped recipes: {', '.join(shipped)}" if shipped else ""
    raise ConfigError(f"config file {str(name)!r} not found{hint}")


def parse_yaml(text: str | bytes, where: str) -> Any:
    """One YAML document (a recipe, a `--set` value) with duplicate keys refused: every way it can fail
    to decode or parse (bad UTF-8, a syntax error, nesting too deep) is one ConfigError naming `where`."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{where} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                              "save it as UTF-8") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise ConfigError(f"{where} is not valid YAML: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise ConfigError(f"{where} is nested too deeply to be a recipe; flatten it") from None
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A recipe's settings; ConfigError for a missing, unreadable, empty or invalid file, or a duplicate key."""
    path = Path(path).expanduser()
    problem = path_problem(path)
    if problem:
        raise ConfigError(f"config file {str(path)!r} {problem}; pass a YAML recipe, e.g. configs/demo.yaml")
    try:
        with path.open("rb") as f:
            data = f.read(MAX_YAML_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"cannot read config file {str(path)!r}: {e.strerror}") from None
    _check(len(data) <= MAX_YAML_BYTES, f"config file {str(path)!r} is over {MAX_YAML_BYTES // 2**20} MB: "
           "a recipe holds a few hundred settings; is it the right file?")
    d = parse_yaml(data, f"config file {str(path)!r}")
    _check(d is not None, f"config file {str(path)!r} is empty; give the settings to change, or leave out --config "
           "to use the defaults")
    _check(isinstance(d, dict), f"config file {str(path)!r} must hold a mapping of settings, not {type(d).__name__}")
    return d


def parse_override(text: str) -> tuple[list[str], Any]:
    """`"optim.lr=1e-3"` -> (["optim", "lr"], 0.001): the value goes through `parse_yaml`, as a recipe does."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    _check(bool(sep) and bool(key), f"--set expects key=value (dotted keys for nested settings), got {text!r}")
    parts = key.split(".")
    _check(all(parts), f"--set key {key!r} has an empty part")
    return parts, parse_yaml(raw, f"--set {text!r}") if raw.strip() else None


def parse_kwargs(items: list[str]) -> dict[str, Any]:
    """`["depth=2", "pos_embed=rope"]` -> {"depth": 2, "pos_embed": "rope"}: keyword arguments given as
    `--set` style items (a command's model options), each value parsed as `parse_override` does."""
    out = {}
    for item in items:
        parts, value = parse_override(item)
        out[".".join(parts)] = value
    return out


def apply_overrides(d: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """A copy of the raw config mapping with `key=value` overrides applied (nested keys are dotted).

    Unknown keys are not caught here but by `config_from_dict`, which names them and the valid ones.
    """
    d = copy.deepcopy(d)
    for text in overrides or []:
        parts, value = parse_override(text)
        node = d
        for i, p in enumerate(parts[:-1]):
            child = node.get(p)
            if child is None:
                child = node[p] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: {'.'.join(parts[: i + 1])!r} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return d


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML recipe (or start from the defaults), apply overrides, validate."""
    d = load_yaml(path) if path is not None else {}
    return config_from_dict(apply_overrides(d, overrides))


def save_config(cfg: TrainConfig, path: str | Path, notes: dict[str, str] | None = None) -> None:
    """Write the resolved config as YAML; `notes` ({"section.key": text}) become comments at the end of
    those keys' lines (e.g. a value a budget solved, beside the recipe's). The file loads as before."""
    lines = yaml.safe_dump(config_to_dict(cfg), sort_keys=False).splitlines()
    section = ""
    for i, line in enumerate(lines):
        key = line.strip().split(":", 1)[0]
        if not line.startswith(" "):
            section = key
        dotted = f"{section}.{key}" if line.startswith("  ") and not line.startswith("   ") else key
        if notes and dotted in notes:
            lines[i] = f"{line}  # {notes[dotted]}"
    Path(path).write_text("\n".join(lines) + "\n")


def diff_configs(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config dicts."""
    out = []
    for k in sorted(set(a) | set(b), key=str):
        key = f"{prefix}{k}"
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += diff_configs(va, vb, key + ".")
        elif va != vb:
            out.append(key)
    return out
