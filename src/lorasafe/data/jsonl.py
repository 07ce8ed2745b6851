"""JSONL reading and writing with errors that name the file and line.

Owns: strict reading of user-supplied JSONL, tolerant reading of our own append-only stores
(a torn last line left by a kill is dropped, never an error), and atomic whole-file writes.
Must not import torch or transformers.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from lorasafe.errors import DataError


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of a user-supplied JSONL file."""
    with _open_user_file(path) as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark is harmless
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{path}, line {lineno}: not UTF-8 text (byte 0x{raw[e.start]:02x} at byte {e.start + 1} of the "
                    "line). JSONL files must be UTF-8; re-save the file as UTF-8 or fix that line."
                ) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(
                    f"{path}, line {lineno}: not valid JSON ({e.msg.removesuffix(' at')} at column {e.colno}). "
                    "Each line must be one JSON object; fix or delete that line."
                ) from None
            except RecursionError:
                raise DataError(f"{path}, line {lineno}: JSON nested too deeply to read; each line must be one "
                                "flat JSON object.") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}, line {lineno}: expected a JSON object, got {_json_type(row)}; each line "
                                "must be one object ({...}); fix or delete that line.")
            yield lineno, row


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _open_user_file(path: Path):
    if path.is_dir():
        raise DataError(f"Dataset {path} is a directory; point the config at a .jsonl file in it.")
    if not path.is_file():
        raise DataError(f"Dataset file {path} does not exist. Check the path in your config.")
    try:
        return path.open("rb")
    except OSError as e:
        raise DataError(f"Dataset file {path} cannot be read ({e.strerror or e}); check its permissions.") from None


def read_jsonl_numbered(path: str | Path, *, required: Iterable[str] = ()) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) of every row of a user-supplied JSONL file; each must have the `required` keys."""
    path = Path(path)
    rows: list[tuple[int, dict[str, Any]]] = []
    required = tuple(required)
    for lineno, row in iter_jsonl(path):
        missing = [k for k in required if k not in row]
        if missing:
            raise DataError(
                f"{path}, line {lineno}: missing key(s) {', '.join(missing)}; "
                f"every row needs {', '.join(required)}."
            )
        rows.append((lineno, row))
    if not rows:
        raise DataError(f"Dataset file {path} is empty; it needs at least one JSON object per line.")
    return rows


def read_jsonl(path: str | Path, *, required: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Read a user-supplied JSONL file; every row must be an object with the `required` keys."""
    return [row for _, row in read_jsonl_numbered(path, required=required)]


def read_store(path: str | Path) -> list[dict[str, Any]]:
    """Read one of our own append-only stores, repairing a torn final line left by a kill."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    rows = []
    good_end = 0
    for raw in data.splitlines(keepends=True):
        if not raw.endswith(b"\n"):
            break  # torn tail: the writer was killed mid-line
        try:
            rows.append(json.loads(raw))
        except json.JSONDecodeError:
            break
        good_end += len(raw)
    if good_end != len(data):
        with path.open("r+b") as f:
            f.truncate(good_end)
    return rows


def append_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Append rows and fsync, so a kill loses at most the rows of the batch in flight."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a whole file so that readers see the old or the new content, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; results should read like any other file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_jsonl_atomic(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
