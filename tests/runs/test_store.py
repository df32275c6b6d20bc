from pathlib import Path

import pytest

from astra_synth.runs.ids import child_id
from astra_synth.runs.store import ErrorRecord, OkRecord, RejectRecord, RunLocked, RunStore, StageStore


def _ok(key: str, n: int, of: int | None = None, index: int | None = None) -> OkRecord:
    rid = key if index is None else child_id(key, index)
    return OkRecord(id=rid, parent_id=None, stage="s", version="1", data={"n": n}, of=of)


def _error(key: str) -> ErrorRecord:
    return ErrorRecord(id=key, stage="s", parent_id=None, error="ValueError", message="boom", traceback="")


def test_outcomes_survive_reopen_with_ok_over_rejected_over_error(tmp_path: Path) -> None:
    store = StageStore(tmp_path / "s")
    store.open()
    store.record_error(_error("a"))
    store.record_ok("a", [_ok("a", 1)])
    store.record_reject(RejectRecord(id="b", stage="s", reason="r1"))
    store.record_error(_error("b"))  # an error never overrides a verdict
    store.record_error(_error("c"))
    store.close()

    again = StageStore(tmp_path / "s")
    again.open()
    assert (again.outcome("a"), again.outcome("b"), again.outcome("c"), again.outcome("d")) == (
        "ok",
        "rejected",
        "error",
        None,
    )
    assert again.is_done("a") and again.is_done("b") and not again.is_done("c")
    assert not again.is_done("b", retry_rejected=True)
    again.close()


def test_fan_out_cut_short_by_a_crash_is_redone_and_dupes_collapse(tmp_path: Path) -> None:
    stage_dir = tmp_path / "s"
    stage_dir.mkdir()
    lines = [
        _ok("a", 0, of=2, index=0),
        _ok("a", 1, of=2, index=1),
        _ok("b", 0, of=3, index=0),  # b's other two outputs never reached the disk
        _ok("b", 1, of=3, index=1),
        _ok("a", 0, of=2, index=0),  # a duplicate copy: the first one wins
    ]
    (stage_dir / "ok.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in lines))
    store = StageStore(stage_dir)
    store.open()
    assert [r.id for r in store.ok["a"]] == [child_id("a", 0), child_id("a", 1)]
    assert "b" not in store.ok and not store.is_done("b")
    store.close()


def test_one_process_per_run_dir(tmp_path: Path) -> None:
    with RunStore(tmp_path / "run"), pytest.raises(RunLocked), RunStore(tmp_path / "run"):
        pass
    with RunStore(tmp_path / "run"):  # released on exit
        pass


def test_input_rejects_are_recorded_once_across_sessions(tmp_path: Path) -> None:
    record = RejectRecord(id="x", stage="input", reason="invalid_input", detail="in.jsonl:3: ...")
    for _ in range(2):
        with RunStore(tmp_path) as store:
            store.record_input_reject(record)
            store.record_input_reject(record)
    assert (tmp_path / "input" / "rejects.jsonl").read_text().count("\n") == 1
