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


# --- bad data files (issue 14): one DataError naming the file and line ----------------------------------
ITEM = {"id": "a", "prompt": "x", "kind": "harmful"}


def _items_error(tmp_path, content: str | bytes) -> str:
    p = tmp_path / "d.jsonl"
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataError) as e:
        load_items(p)
    assert str(p) in str(e.value)
    return str(e.value)


def test_non_utf8_bytes_name_the_line(tmp_path):
    good = json.dumps(ITEM) + "\n"
    msg = _items_error(tmp_path, good.encode() + b'{"id": "b", "prompt": "caf\xe9", "kind": "harmful"}\n')
    assert "line 2" in msg and "UTF-8" in msg and "0xe9" in msg
    msg = _items_error(tmp_path, good.encode("utf-16"))
    assert "line 1" in msg and "UTF-8" in msg


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + (json.dumps(ITEM) + "\n").encode())
    assert [it.id for it in load_items(p)] == ["a"]


@pytest.mark.parametrize("field,value,expect", [
    ("id", ["a"], "id must be a string"),
    ("id", 7, "id must be a string"),
    ("id", None, "id must be a string"),
    ("id", "  ", "id is empty"),
    ("prompt", ["x"], "prompt must be a non-empty string"),
    ("prompt", 3, "prompt must be a non-empty string"),
    ("prompt", None, "prompt must be a non-empty string"),
    ("prompt", {"text": "x"}, "prompt must be a non-empty string"),
    ("prompt", "", "prompt is empty"),
    ("kind", ["harmful"], "kind must be one of"),
    ("answer", ["4"], "answer must be a string"),
    ("answer", 4, "answer must be a string"),
    ("target", 5, "target must be a string"),
    ("meta", "x", "meta must be a JSON object"),
])
def test_a_field_of_the_wrong_type_names_line_and_field(tmp_path, field, value, expect):
    rows = [ITEM, {**ITEM, "id": "b", field: value}]
    msg = _items_error(tmp_path, "".join(json.dumps(r) + "\n" for r in rows))
    assert "line 2" in msg and expect in msg


def test_optional_fields_may_be_null(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({**ITEM, "answer": None, "target": None, "meta": None}) + "\n")
    (it,) = load_items(p)
    assert it.answer is None and it.target is None and it.meta == {}


def test_rows_that_are_not_objects_and_deep_nesting_are_one_error(tmp_path):
    assert "got an array" in _items_error(tmp_path, "[1, 2]\n")
    assert "got a string" in _items_error(tmp_path, '"hello"\n')
    assert "line 1" in _items_error(tmp_path, "[" * 100000 + "]" * 100000 + "\n")


def test_duplicate_ids_name_both_lines_and_a_directory_is_not_a_file(tmp_path):
    msg = _items_error(tmp_path, json.dumps(ITEM) + "\n\n" + json.dumps({**ITEM, "prompt": "y"}) + "\n")
    assert "line 3" in msg and "first on line 1" in msg
    with pytest.raises(DataError, match="is a directory"):
        load_items(tmp_path)
