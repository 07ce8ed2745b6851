"""Loading YAML configs into the typed schema, with dotted overrides and readable errors.

Owns: YAML parsing, `--set a.b=value` overrides, the translation of pydantic errors into one
paragraph naming the file, the key and the fix (with the nearest valid key for typos), and the
stable hash of a resolved config. Must not import torch.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from lorasafe.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def parse_override(text: str) -> tuple[str, Any]:
    """`adapter.rank=2` -> ("adapter.rank", 2); values are read as YAML (`[up, down]` is a list)."""
    if "=" not in text:
        raise ConfigError(f"Override {text!r} has no '='; write it as KEY=VALUE, e.g. --set adapter.rank=2.")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def apply_override(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"Override {dotted!r}: {part!r} is a value, not a section, so it has no sub-keys.")
        node = child
    node[parts[-1]] = value


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Valid keys of the section at `loc` (the last element of loc is the bad key)."""
    cls: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or cls is None:
            continue
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        cls = next((a for a in (ann, *getattr(ann, "__args__", ())) if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return list(getattr(cls, "model_fields", {}) or [])


def format_validation_error(err: ValidationError, model: type[BaseModel], source: str) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        key = ".".join(str(p) for p in loc)
        if e["type"] == "extra_forbidden":
            valid = _fields_at(model, loc)
            close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
            hint = f" Did you mean {'.'.join(str(p) for p in (*loc[:-1], close[0]))!r}?" if close else ""
            lines.append(f"unknown key {key!r}.{hint} Valid keys here: {', '.join(valid)}.")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{key or 'config'}: {msg} (got {e.get('input')!r}).")
    return f"Config {source} is invalid: " + " ".join(lines) + " Fix the file or the --set override and rerun."


def validate(model: type[M], data: dict[str, Any], source: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, model, source)) from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist. Pass the path of a YAML file, e.g. configs/demo.yaml.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark else ""
        raise ConfigError(f"Config {path}{where} is not valid YAML ({getattr(e, 'problem', e)}). Fix the syntax there.") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Config {path} must be a mapping of keys to values at the top level.")
    return data


def load_config(model: type[M], path: str | Path | None = None, overrides: list[str] = (),
                data: dict[str, Any] | None = None) -> M:
    """Load `path` (or `data`), apply `KEY=VALUE` overrides, validate into `model`."""
    raw = load_yaml(path) if path is not None else dict(data or {})
    for text in overrides:
        apply_override(raw, *parse_override(text))
    return validate(model, raw, str(path) if path else "(inline)")


def config_hash(cfg: BaseModel) -> str:
    """Stable identity of a resolved config: same fields, same hash."""
    blob = json.dumps(cfg.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def dump_yaml(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
