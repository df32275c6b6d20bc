import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from astra_synth.runs.jsonl import (
    JsonlAppender,
    StoreCorrupted,
    load_records,
    read_jsonl,
    repair_tail,
    write_json_atomic,
)


class Rec(BaseModel):
    n: int


class Nested(BaseModel):
    name: str
    tags: list[str]


def test_unterminated_last_line_is_cut_and_complete_lines_kept(tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_bytes(b'{"n": 1}\n{"n": 2}\n{"n": 3')
    assert repair_tail(path) == len(b'{"n": 3')
    assert path.read_bytes() == b'{"n": 1}\n{"n": 2}\n'
    assert [r.n for r in load_records(path, Rec)] == [1, 2]


def test_terminated_garbage_last_line_is_cut(tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_bytes(b'{"n": 1}\n\x00\x00\x00\n')
    repair_tail(path)
    assert path.read_bytes() == b'{"n": 1}\n'


def test_long_torn_line_beyond_one_read_chunk(tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    head = b'{"n": 1}\n'
    path.write_bytes(head + b'{"n": "' + b"x" * 200_000)
    repair_tail(path)
    assert path.read_bytes() == head


def test_intact_file_is_untouched(tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_bytes(b'{"n": 1}\n')
    assert repair_tail(path) == 0
    assert path.read_bytes() == b'{"n": 1}\n'


def test_bad_line_in_the_middle_is_an_error_not_a_repair(tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_bytes(b'{"n": 1}\n{"n": oops}\n{"n": 3}\n')
    repair_tail(path)
    with pytest.raises(StoreCorrupted, match=r"ok\.jsonl:2"):
        load_records(path, Rec)


def test_appender_batches_writes_until_flush(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    log = JsonlAppender(path, max_batch=3, max_age_s=60)
    log.open()
    log.append(Rec(n=1))
    log.append(Rec(n=2))
    assert path.read_bytes() == b""  # buffered: no write, no fsync yet
    log.append(Rec(n=3))  # the batch is full
    assert [r.n for r in load_records(path, Rec)] == [1, 2, 3]
    log.append(Rec(n=4))
    log.flush_if_due()  # younger than max_age_s
    assert len(load_records(path, Rec)) == 3
    log.close()  # close flushes
    assert [r.n for r in load_records(path, Rec)] == [1, 2, 3, 4]


def test_appender_repairs_on_open_then_appends_after_the_good_lines(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"n": 1}\n{"n"')
    log = JsonlAppender(path)
    log.open()
    log.append(Rec(n=2))
    log.close()
    assert [r.n for r in load_records(path, Rec)] == [1, 2]


def test_read_jsonl_names_file_line_and_field_and_keeps_going(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    lines = [
        json.dumps({"name": "a", "tags": []}),
        "{not json",
        "",
        json.dumps({"name": "b", "tags": ["x", 3]}),
        json.dumps({"tags": []}),
        json.dumps({"name": "c", "tags": ["y"]}),
    ]
    path.write_text("\n".join(lines) + "\n")
    path.open("ab").write(b'{"name": "\xff", "tags": []}\n')
    read = read_jsonl(path, Nested)
    assert [(line, m.name) for line, m in read.items] == [(1, "a"), (6, "c")]
    messages = {line: str(err) for line, _, err in read.errors}
    assert set(messages) == {2, 4, 5, 7}
    assert messages[2].startswith(f"{path}:2: invalid JSON")
    assert messages[4].startswith(f"{path}:4: ") and "field 'tags.1'" in messages[4]
    assert "field 'name'" in messages[5] and "Field required" in messages[5]
    assert messages[7].startswith(f"{path}:7: not UTF-8")
    assert read.errors[0][1] == "{not json"


def test_write_json_atomic_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
