from __future__ import annotations

from pathlib import Path

import pytest

from bpfman.model.records import LinkRecord, ProgramRecord
from bpfman.store import Store


def program(pid: int, owner: int | None = None) -> ProgramRecord:
    return ProgramRecord(program_id=pid, name=f"p{pid}", type="tracepoint", path="/x.o",
                         pin_path=f"/fs/prog_{pid}", map_owner_id=owner or pid,
                         map_pin_dir=f"/fs/maps/{owner or pid}",
                         global_data={"g": b"\x01\x02"}, metadata={"a": "b"}, loaded_by_uid=0)


def link(pid: int, seq: int) -> LinkRecord:
    return LinkRecord(link_id=0, program_id=pid, type="tracepoint", params={"tracepoint": "a/b"},
                      attach_point="tracepoint:0:a/b", seq=seq, pin_path="")


def test_round_trip_and_persistence(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    with store.transaction():
        store.insert_program(program(7))
        lid = store.insert_link(link(7, store.next_link_seq()))
    got = store.get_program(7)
    assert got is not None and got.global_data == {"g": b"\x01\x02"} and got.metadata == {"a": "b"}
    store.close()
    reopened = Store(tmp_path / "s.db")
    [stored_link] = reopened.list_links(program_id=7)
    assert stored_link.link_id == lid and stored_link.params == {"tracepoint": "a/b"}


def test_failed_transaction_changes_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    with pytest.raises(RuntimeError), store.transaction():
        store.insert_program(program(1))
        raise RuntimeError("kernel refused")
    assert store.list_programs() == []


def test_listing_memo_follows_writes_and_rollbacks(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    with store.transaction():
        store.insert_program(program(1))
    assert [p.program_id for p in store.list_programs()] == [1]
    with pytest.raises(RuntimeError), store.transaction():
        store.insert_program(program(2))
        # read inside the transaction: sees its own uncommitted row
        assert [p.program_id for p in store.list_programs()] == [1, 2]
        raise RuntimeError("kernel refused")
    assert [p.program_id for p in store.list_programs()] == [1]
    with store.transaction():
        store.delete_program(1)
    assert store.list_programs() == []


def test_link_ids_are_never_reused(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    with store.transaction():
        store.insert_program(program(1))
        first = store.insert_link(link(1, store.next_link_seq()))
        store.delete_link(first)
        second = store.insert_link(link(1, store.next_link_seq()))
    assert second > first


def test_links_need_their_program(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    with pytest.raises(Exception, match="FOREIGN KEY"), store.transaction():
        store.insert_link(link(99, 1))


def test_map_users(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    with store.transaction():
        store.insert_program(program(1))
        store.insert_program(program(2, owner=1))
        store.insert_program(program(3))
    assert sorted(store.map_users(1)) == [1, 2]
