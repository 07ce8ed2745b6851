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


class _DuplicateKey(yaml.MarkedYAMLError):
    """A key given twice in one mapping: plain YAML keeps the last silently, which hides typos and stale lines."""


class _StrictLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a key given twice in the same mapping (merge keys `<<` may still be overridden)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: the base constructor reports it with its line
                    continue
                if first is None:
                    seen[key] = key_node.start_mark.line
                else:
                    shown = "on" if key is True else key  # YAML 1.1 reads a bare `on:` key as true
                    line = key_node.start_mark.line
                    lines = f"lines {first + 1} and {line + 1}" if first != line else f"both on line {line + 1}"
                    raise _DuplicateKey(None, None, f"key {shown!r} appears twice in the same section ({lines})",
                                        key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def parse_override(text: str) -> tuple[str, Any]:
    """`adapter.rank=2` -> ("adapter.rank", 2); values are read as YAML (`[up, down]` is a list)."""
    if "=" not in text:
        raise ConfigError(f"Override {text!r} has no '='; write it as KEY=VALUE, e.g. --set adapter.rank=2.")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part.strip() for part in key.split(".")):
        raise ConfigError(f"Override {text!r} names no key (or an empty part of one); write it as KEY=VALUE with a "
                          "dotted key such as adapter.rank=2.")
    try:
        value = yaml.load(raw, Loader=_StrictLoader) if raw.strip() else ""
    except _DuplicateKey as e:
        raise ConfigError(f"Override {text!r}: {e.problem}; give each key once.") from None
    except yaml.YAMLError:
        value = raw  # not YAML (e.g. an unbalanced bracket): the plain string, for the schema to judge
    return key, value


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
        elif e["type"] == "missing":
            lines.append(f"{key}: required but missing; add it.")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            got = repr(e.get("input"))
            got = got if len(got) <= 80 else got[:77] + "..."  # a whole section would bury the message
            lines.append(f"{key or 'config'}: {msg} (got {got}).")
    return f"Config {source} is invalid: " + " ".join(lines) + " Fix the file or the --set override and rerun."


def validate(model: type[M], data: dict[str, Any], source: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, model, source)) from None


def demo_config_path() -> Path:
    """The packaged demo study (`lorasafe demo`); the mini build's premise check trains like it."""
    from importlib import resources

    return Path(str(resources.files("lorasafe") / "configs" / "demo.yaml"))


def load_yaml(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML config file; an empty file, a duplicate key or a non-mapping is an error."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"Config {path} is a directory; pass the path of a YAML file in it, "
                          f"e.g. {path / 'experiment.yaml'}.")
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist. Pass the path of a YAML file, e.g. configs/demo.yaml.")
    try:
        raw = path.read_bytes().removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark is harmless
    except OSError as e:
        raise ConfigError(f"Config {path} cannot be read ({e.strerror or e}); check its permissions.") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(f"Config {path}, line {line} is not UTF-8 text (byte 0x{raw[e.start]:02x}); save the "
                          "file as UTF-8.") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except _DuplicateKey as e:
        raise ConfigError(f"Config {path}, line {e.problem_mark.line + 1}: {e.problem}; YAML would silently keep the "
                          "last one. Delete the line you do not mean.") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark else ""
        why = getattr(e, "problem", None) or str(e).splitlines()[0]
        if isinstance(e, yaml.reader.ReaderError):  # a control character: its position is a character offset
            where = f", line {text[: e.position].count(chr(10)) + 1}"
            why = f"character {e.character!r}: {e.reason}"
        raise ConfigError(f"Config {path}{where} is not valid YAML ({why}). Fix the syntax there.") from None
    if data is None:
        # An empty file must not silently run every default (the whole default experiment).
        raise ConfigError(f"Config {path} is empty (no keys), so it would run every default silently. Write the "
                          "settings you mean (e.g. copy configs/demo.yaml), or `name: experiment` to run the defaults.")
    if not isinstance(data, dict):
        kinds = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
        kind = kinds.get(type(data), type(data).__name__)
        raise ConfigError(f"Config {path} must be a mapping of keys to values at the top level, not {kind}; write "
                          "it as `key: value` lines (e.g. `name: my-run`).")
    return data


def load_config(model: type[M], path: str | Path | None = None, overrides: list[str] = (),
                data: dict[str, Any] | None = None) -> M:
    """Load `path` (or `data`), apply `KEY=VALUE` overrides, validate into `model`."""
    raw = load_yaml(path) if path is not None else dict(data or {})
    for text in overrides:
        apply_override(raw, *parse_override(text))
    return validate(model, raw, str(path) if path else "(inline)")


def config_hash(cfg: BaseModel) -> str:
    """Stable identity of a resolved config: same fields, same hash (fields that change no result left out)."""
    blob = json.dumps(cfg.model_dump(mode="json", context={"identity": True}), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def dump_yaml(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
