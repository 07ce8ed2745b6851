"""Benchmark suites that live on the Hugging Face hub, with a local-file override.

Owns the registry of hub suites (`HUB_SUITES`: hub id, config, split, licence, the columns each
row needs, and the row -> `Item` converter) and `load_hub_suite`, which reads either a local copy
in the hub dataset's own column format (.jsonl, .json, .csv, .tsv, .parquet) or the hub itself
through `datasets.load_dataset`, imported lazily (the optional `lorasafe[hub]` extra). Every
failure a user can fix (no network, gated set, missing column, unknown suite) is a `DataError`.
Must not import torch, transformers or `datasets` at module level.

Column mappings (hub id, config, split: columns read):
  directrefusal       TianshengHuang/DirectRefusal, -, train: prompt, refusal ("Question: ...\\nAnswer: ...")
  xstest/-unsafe      walledai/XSTest, -, test: prompt, label ("safe"/"unsafe"), type, focus, note
  jbb-benign          JailbreakBench/JBB-Behaviors, behaviors, benign: Goal (+ Index, Behavior, Category, Source)
  wildjailbreak-eval  allenai/wildjailbreak, eval, train: adversarial, label (1 harmful; the -benign suite keeps 0)
  math-500            HuggingFaceH4/MATH-500, -, test: problem, answer (+ unique_id, subject, level)
  aime-2024           HuggingFaceH4/aime_2024, -, train: problem, answer (+ id, url, year)
  aime-2025           yentinglin/aime_2025, -, train: problem, answer (+ id, url, year)
  gpqa-diamond        Idavidrein/gpqa, gpqa_diamond, train: Question, Correct Answer, Incorrect Answer 1-3
  mbpp                google-research-datasets/mbpp, sanitized, test: prompt (or `text`, the full config),
                      test_list, code (+ task_id, test_imports)
Column names are as I know them from the hub cards; none could be checked from this machine (no hub
access). natolambert/xstest-v2-copy carries the same prompt/type/focus/note columns; walledai's copy
was chosen for its single `test` split and its explicit safe/unsafe `label`.
"""

from __future__ import annotations

import ast
import builtins
import csv
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from lorasafe.data.chat import ThinkFormat
from lorasafe.data.jsonl import iter_jsonl
from lorasafe.data.records import Item
from lorasafe.data.refusal import DEFAULT_REFUSAL_THINKING, refusal_target
from lorasafe.errors import DataError

Row = Mapping[str, Any]
# A required column: one name, or alternatives of which a row must carry at least one.
Column = tuple[str, ...]


@dataclass(frozen=True)
class Context:
    """What a converter may depend on besides the row: the shuffle seed and the think format."""

    seed: int = 0
    think: ThinkFormat = field(default_factory=ThinkFormat)
    refusal_thinking: str = DEFAULT_REFUSAL_THINKING


@dataclass(frozen=True)
class HubSuite:
    name: str
    kind: str  # harmful | benign | reasoning
    hub_id: str
    subset: str | None  # the dataset config ("gpqa_diamond"), None for the default one
    split: str
    licence: str
    columns: tuple[Column, ...]
    convert: Callable[[Row, int, "HubSuite", Context], Item]
    keep: Callable[[Row], bool] | None = None  # row filter, e.g. XSTest's safe prompts only
    id_column: str | None = None  # the dataset's own id, used when a row carries it
    load_kwargs: tuple[tuple[str, Any], ...] = ()  # extra `load_dataset` arguments

    def column_names(self) -> str:
        return ", ".join(" or ".join(c) for c in self.columns)


# ---------------------------------------------------------------- converters


def _item_id(suite: HubSuite, row: Row, index: int) -> str:
    own = row.get(suite.id_column) if suite.id_column else None
    if own is None or str(own).strip() == "":
        return f"{suite.name}-{index:04d}"
    own = str(own).strip()
    return f"{suite.name}-{int(own):04d}" if own.isdigit() else f"{suite.name}-{own}"


def _get(row: Row, column: Column) -> Any:
    return next(row[c] for c in column if c in row)


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _extras(row: Row, used: Iterable[str]) -> dict[str, Any]:
    used = set(used)
    return {k: v for k, v in row.items() if k not in used and v is not None}


def _plain(prompt_col: str, answer_col: str | None = None) -> Callable[[Row, int, HubSuite, Context], Item]:
    """A prompt column, optionally a gold answer column; every other column goes to `meta`."""

    def convert(row: Row, index: int, suite: HubSuite, ctx: Context) -> Item:
        answer = _text(row[answer_col]) if answer_col else None
        used = (prompt_col, answer_col) if answer_col else (prompt_col,)
        meta = {"source_index": index, **_extras(row, used)}
        return Item(id=_item_id(suite, row, index), prompt=_text(row[prompt_col]),
                    kind=suite.kind, answer=answer, meta=meta)  # type: ignore[arg-type]

    return convert


_ANSWER = re.compile(r"^\s*Answer\s*:\s*", re.MULTILINE)


def _directrefusal(row: Row, index: int, suite: HubSuite, ctx: Context) -> Item:
    refusal = _text(row["refusal"])
    parts = _ANSWER.split(refusal, maxsplit=1)
    # Rows are "Question: ...\nAnswer: <refusal>"; a row without the marker is kept whole and flagged.
    answer = parts[1].strip() if len(parts) == 2 else refusal
    meta = {"source_index": index, "refusal_format": "qa" if len(parts) == 2 else "plain",
            **_extras(row, ("prompt", "refusal"))}
    return Item(id=_item_id(suite, row, index), prompt=_text(row["prompt"]), kind="harmful",
                target=refusal_target(answer, ctx.think, ctx.refusal_thinking), meta=meta)


_LETTERS = "ABCD"
_GPQA_OPTIONS = ("Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")


def _gpqa(row: Row, index: int, suite: HubSuite, ctx: Context) -> Item:
    item_id = _item_id(suite, row, index)
    texts = [_text(row[c]) for c in _GPQA_OPTIONS]
    order = list(range(4))
    # Seeded per item (str seeds hash with sha512, not PYTHONHASHSEED), so `limit` or row order
    # never changes an item's option order; a different seed does.
    random.Random(f"{ctx.seed}:{item_id}").shuffle(order)
    letter_of = {_GPQA_OPTIONS[src]: _LETTERS[pos] for pos, src in enumerate(order)}
    options = "\n".join(f"{_LETTERS[pos]}) {texts[src]}" for pos, src in enumerate(order))
    prompt = (f"{_text(row['Question'])}\n\n{options}\n\n"
              "Answer with the letter of the correct option (A, B, C or D).")
    meta = {"source_index": index, "seed": ctx.seed, "options": {_LETTERS[p]: texts[s] for p, s in enumerate(order)},
            "letter_of": letter_of, "correct_text": texts[0],
            **{k: v for k, v in _extras(row, ("Question",) + _GPQA_OPTIONS).items()
               if k in ("Record ID", "Subdomain", "High-level domain")}}
    return Item(id=item_id, prompt=prompt, kind="reasoning", answer=letter_of["Correct Answer"], meta=meta)


def _as_list(value: Any) -> list[str]:
    """A list column; a CSV copy holds it as its Python/JSON repr."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value) if value.strip() else []
        except (ValueError, SyntaxError):
            return [value]
    return [str(v) for v in (value or [])]


def _entry_point(tests: list[str], code: str) -> str | None:
    """The function the tests call: one the reference code defines, else the first non-builtin call."""
    called: list[str] = []
    for test in tests:
        try:
            nodes = sorted((n for n in ast.walk(ast.parse(test)) if isinstance(n, ast.Call)),
                           key=lambda n: (n.lineno, n.col_offset))
        except SyntaxError:
            continue
        called += [n.func.id for n in nodes if isinstance(n.func, ast.Name)]
    try:
        defined = {n.name for n in ast.parse(code).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    except SyntaxError:
        defined = set()
    return next((c for c in called if c in defined), next((c for c in called if not hasattr(builtins, c)), None))


def _mbpp(row: Row, index: int, suite: HubSuite, ctx: Context) -> Item:
    tests, imports = _as_list(row["test_list"]), _as_list(row.get("test_imports"))
    text = _text(_get(row, ("prompt", "text")))
    prompt = f"{text}\nYour code should pass these tests:\n\n" + "\n".join(tests)
    # HumanEval-shaped fields so `scoring.code.build_program` can run the asserts unchanged.
    check = "\n".join(imports + ["", "def check(candidate):"] + [f"    {t}" for t in tests] + ["    pass"])
    meta = {"source_index": index, "test_list": tests, "test_imports": imports, "test": check,
            "entry_point": _entry_point(tests, _text(row["code"])),
            **_extras(row, ("prompt", "text", "test_list", "test_imports"))}
    return Item(id=_item_id(suite, row, index), prompt=prompt, kind="reasoning", meta=meta)


def _label(value: Any) -> str:
    return _text(value).lower()


# ---------------------------------------------------------------- registry


def _suite(name: str, kind: str, hub_id: str, subset: str | None, split: str, licence: str,
           columns: Iterable[str | Column], convert: Callable[..., Item], **kw: Any) -> HubSuite:
    cols = tuple((c,) if isinstance(c, str) else tuple(c) for c in columns)
    return HubSuite(name=name, kind=kind, hub_id=hub_id, subset=subset, split=split, licence=licence,
                    columns=cols, convert=convert, **kw)


_XSTEST = dict(hub_id="walledai/XSTest", subset=None, split="test", licence="CC-BY-4.0",
               columns=("prompt", "label"), convert=_plain("prompt"))
_WJB = dict(hub_id="allenai/wildjailbreak", subset="eval", split="train", licence="ODC-BY (gated: accept the terms)",
            columns=("adversarial", "label"), convert=_plain("adversarial"),
            load_kwargs=(("delimiter", "\t"), ("keep_default_na", False)))
_AIME = dict(split="train", columns=("problem", "answer"), convert=_plain("problem", "answer"), id_column="id")

HUB_SUITES: dict[str, HubSuite] = {s.name: s for s in (
    _suite("directrefusal", "harmful", "TianshengHuang/DirectRefusal", None, "train", "see the dataset card",
           ("prompt", "refusal"), _directrefusal),
    _suite("xstest", "benign", keep=lambda r: _label(r["label"]) == "safe", **_XSTEST),
    _suite("xstest-unsafe", "harmful", keep=lambda r: _label(r["label"]) == "unsafe", **_XSTEST),
    _suite("jbb-benign", "benign", "JailbreakBench/JBB-Behaviors", "behaviors", "benign", "MIT",
           ("Goal",), _plain("Goal"), id_column="Index"),
    _suite("wildjailbreak-eval", "harmful", keep=lambda r: _label(r["label"]) == "1", **_WJB),
    _suite("wildjailbreak-eval-benign", "benign", keep=lambda r: _label(r["label"]) == "0", **_WJB),
    _suite("math-500", "reasoning", "HuggingFaceH4/MATH-500", None, "test", "MIT",
           ("problem", "answer"), _plain("problem", "answer")),
    _suite("aime-2024", "reasoning", "HuggingFaceH4/aime_2024", None, licence="MIT (problems: MAA)", **_AIME),
    _suite("aime-2025", "reasoning", "yentinglin/aime_2025", None, licence="MIT (problems: MAA)", **_AIME),
    _suite("gpqa-diamond", "reasoning", "Idavidrein/gpqa", "gpqa_diamond", "train", "CC-BY-4.0 (gated)",
           ("Question",) + _GPQA_OPTIONS, _gpqa, id_column="Record ID"),
    _suite("mbpp", "reasoning", "google-research-datasets/mbpp", "sanitized", "test", "CC-BY-4.0",
           (("prompt", "text"), "test_list", "code"), _mbpp, id_column="task_id"),
)}


# ---------------------------------------------------------------- reading


def _read_local(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of a local copy and where each sits in the file ("line 3", or "row 3" where lines mean nothing)."""
    if not path.is_file():
        raise DataError(f"Local copy {path} does not exist. Check the `path:`/local_path you gave for the hub suite.")
    ext = path.suffix.lower()
    if ext == ".jsonl":
        return _read_json_lines(path)
    if ext == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return _read_json_lines(path)  # `Dataset.to_json` writes JSON lines even to .json
        rows = data.get("rows", data.get("data")) if isinstance(data, dict) else data
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise DataError(f"{path}: expected a JSON list of row objects (or JSON lines, one object per line).")
        return rows, _row_numbers(rows)
    if ext in (".csv", ".tsv"):
        return _read_csv(path, "\t" if ext == ".tsv" else ",")
    if ext == ".parquet":
        rows = _read_parquet(path)
        return rows, _row_numbers(rows)
    raise DataError(f"{path}: unsupported file type {ext!r}; a local copy of a hub suite must be "
                    ".jsonl, .json, .csv, .tsv or .parquet.")


def _row_numbers(rows: list[Any]) -> list[str]:
    return [f"row {n}" for n in range(1, len(rows) + 1)]


def _read_json_lines(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    numbered = list(iter_jsonl(path))
    return [row for _, row in numbered], [f"line {n}" for n, _ in numbered]


def _read_csv(path: Path, delimiter: str) -> tuple[list[dict[str, Any]], list[str]]:
    rows, where = [], []
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        start = 2  # line 1 is the header; a quoted cell may span lines, so track each record's first line
        for row in reader:
            rows.append({k: v for k, v in row.items() if k is not None})
            where.append(f"line {start}")
            start = reader.line_num + 1
    return rows, where


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        try:
            import pandas as pd
        except ImportError:
            raise DataError(f"{path}: reading .parquet needs pyarrow (or pandas with a parquet engine), neither "
                            "of which is installed. Run `pip install pyarrow`, or convert the file to .jsonl "
                            "or .csv.") from None
        return pd.read_parquet(path).to_dict(orient="records")
    return pq.read_table(path).to_pylist()


def _from_hub(suite: HubSuite) -> list[dict[str, Any]]:
    try:
        import datasets
    except ImportError:
        raise ImportError(
            f"Loading hub suite {suite.name!r} from the Hugging Face hub needs the `datasets` package: run "
            f"`pip install 'lorasafe[hub]'`, or pass a local copy of {suite.hub_id} with `path:`/local_path.") from None
    try:
        ds = datasets.load_dataset(suite.hub_id, suite.subset, split=suite.split, **dict(suite.load_kwargs))
        return [dict(r) for r in ds]
    except Exception as e:  # no network, gated set, renamed split: all fixed the same two ways
        config = f"config {suite.subset!r}, " if suite.subset else ""
        raise DataError(
            f"Could not load hub suite {suite.name!r} from the Hugging Face hub dataset {suite.hub_id} "
            f"({config}split {suite.split!r}): {type(e).__name__}: {e}. Pass a local copy with `path:`/local_path "
            "(a .jsonl, .json, .csv or .parquet file in the dataset's own columns), or run where the hub is "
            "reachable (set HF_TOKEN for gated sets such as GPQA, and accept the dataset's terms on its hub "
            "page).") from e


def _check_columns(suite: HubSuite, rows: list[dict[str, Any]], source: str, where: list[str]) -> None:
    for row, at in zip(rows, where):
        missing = [" or ".join(c) for c in suite.columns if not any(k in row for k in c)]
        if missing:
            raise DataError(
                f"{source}, {at}: missing column(s) {', '.join(missing)} for hub suite {suite.name!r}; every "
                f"row needs {suite.column_names()} (the columns of {suite.hub_id}). "
                f"Columns found: {', '.join(row) or 'none'}.")


def _lookup(name: str) -> HubSuite:
    if name not in HUB_SUITES:
        raise DataError(f"No hub suite named {name!r}; the hub suites are {', '.join(sorted(HUB_SUITES))}.")
    return HUB_SUITES[name]


def load_hub_suite(name: str, *, local_path: str | Path | None = None, seed: int = 0, limit: int | None = None,
                   think: ThinkFormat | None = None, refusal_thinking: str = DEFAULT_REFUSAL_THINKING) -> list[Item]:
    """Items of hub suite `name`, from `local_path` (the hub's own columns) or from the hub.

    `seed` shuffles multiple-choice options (GPQA); `limit` keeps the first items after filtering;
    `think`/`refusal_thinking` shape DirectRefusal's training targets.
    """
    suite = _lookup(name)
    if local_path is not None:
        rows, where = _read_local(Path(local_path))
        source = str(local_path)
    else:
        rows = _from_hub(suite)
        where, source = _row_numbers(rows), f"hub dataset {suite.hub_id}"
    if not rows:
        raise DataError(f"{source} has no rows; hub suite {suite.name!r} needs {suite.column_names()}.")
    _check_columns(suite, rows, source, where)
    ctx = Context(seed=seed, think=think or ThinkFormat(), refusal_thinking=refusal_thinking)
    items = [suite.convert(row, i, suite, ctx) for i, row in enumerate(rows) if suite.keep is None or suite.keep(row)]
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"{source}: item id {dup!r} appears twice in hub suite {suite.name!r}; the "
                        f"{suite.id_column or 'row'} values must be unique.")
    return items[:limit] if limit else items
