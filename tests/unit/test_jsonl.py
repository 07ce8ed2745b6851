import json

import pytest

from lorasafe.data.jsonl import append_jsonl, read_jsonl, read_store
from lorasafe.data.records import load_items
from lorasafe.errors import DataError


def test_malformed_line_names_file_and_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"id": "a", "prompt": "x", "kind": "harmful"}\n{"id": "b", "prompt": \n')
    with pytest.raises(DataError) as e:
        read_jsonl(p)
    assert str(p) in str(e.value) and "line 2" in str(e.value)


def test_missing_key_and_empty_and_missing_file(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"id": "a", "kind": "harmful"}\n')
    with pytest.raises(DataError, match="line 1.*prompt"):
        load_items(p)
    p.write_text("\n")
    with pytest.raises(DataError, match="empty"):
        read_jsonl(p)
    with pytest.raises(DataError, match="does not exist"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_bad_kind_and_duplicate_ids(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"id": "a", "prompt": "x", "kind": "evil"}\n')
    with pytest.raises(DataError, match="kind"):
        load_items(p)
    p.write_text('{"id": "a", "prompt": "x", "kind": "harmful"}\n{"id": "a", "prompt": "y", "kind": "harmful"}\n')
    with pytest.raises(DataError, match="twice"):
        load_items(p)


def test_store_repairs_a_torn_tail(tmp_path):
    p = tmp_path / "g.jsonl"
    append_jsonl(p, [{"id": "a", "sample": 0}, {"id": "b", "sample": 0}])
    with p.open("a") as f:
        f.write('{"id": "c", "sam')  # killed mid-write
    assert [r["id"] for r in read_store(p)] == ["a", "b"]
    append_jsonl(p, [{"id": "c", "sample": 0}])
    assert [json.loads(x)["id"] for x in p.read_text().splitlines()] == ["a", "b", "c"]
