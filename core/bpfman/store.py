"""The state store: one sqlite file (WAL) under the state dir.

Every mutation runs inside `Store.transaction()`, which commits before the
daemon replies and rolls back on any exception. Queries return records from
`bpfman.model.records`; no other module writes SQL. Schema changes are numbered
files in ``schema/`` applied in order and tracked with ``PRAGMA user_version``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from bpfman.model.records import DispatcherRecord, LinkRecord, ProgramRecord


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _migrations() -> list[tuple[int, str]]:
    files = resources.files("bpfman").joinpath("schema")
    out = []
    for f in files.iterdir():
        if f.name.endswith(".sql"):
            out.append((int(f.name.split("_", 1)[0]), f.read_text()))
    return sorted(out)


class Store:
    """Not thread-safe by itself: the daemon uses it only from its kernel lane."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        # NORMAL in WAL mode survives any process crash; only an OS crash can
        # lose the last commits, and that also wipes the kernel objects they
        # describe (reconcile then clears or restores them).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()
        # Every program record, read once and kept until a program row changes
        # or a transaction ends: listings read them all (1,000 rows cost ~5 ms
        # to decode), and only this class writes the table.
        self._programs: list[ProgramRecord] | None = None

    def close(self) -> None:
        self._db.close()

    def _migrate(self) -> None:
        (current,) = self._db.execute("PRAGMA user_version").fetchone()
        for number, sql in _migrations():
            if number > current:
                # executescript commits first, so the script carries its own BEGIN.
                self._db.executescript(
                    f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version={number};\nCOMMIT;"
                )

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._db.in_transaction:  # nested: part of the caller's transaction
            yield
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            # A record read inside the transaction may be one it rolled back.
            self._programs = None

    # -- programs -----------------------------------------------------------

    def insert_program(self, p: ProgramRecord) -> None:
        self._programs = None
        self._db.execute(
            "INSERT INTO programs (program_id, name, type, path, pin_path, map_owner_id,"
            " map_pin_dir, global_data, metadata, loaded_by_uid, created_at, attach_func, image)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                p.program_id, p.name, p.type, p.path, p.pin_path, p.map_owner_id,
                p.map_pin_dir, json.dumps({k: v.hex() for k, v in p.global_data.items()}),
                json.dumps(p.metadata), p.loaded_by_uid, p.created_at or now_iso(),
                p.attach_func, p.image,
            ),
        )

    def delete_program(self, program_id: int) -> None:
        self._programs = None
        self._db.execute("DELETE FROM programs WHERE program_id = ?", (program_id,))

    def get_program(self, program_id: int) -> ProgramRecord | None:
        row = self._db.execute(
            "SELECT * FROM programs WHERE program_id = ?", (program_id,)
        ).fetchone()
        return _program(row) if row else None

    def list_programs(self) -> list[ProgramRecord]:
        if self._programs is None:
            rows = self._db.execute("SELECT * FROM programs ORDER BY program_id")
            self._programs = [_program(r) for r in rows]
        return list(self._programs)

    def map_users(self, map_owner_id: int) -> list[int]:
        rows = self._db.execute(
            "SELECT program_id FROM programs WHERE map_owner_id = ?", (map_owner_id,)
        )
        return [r[0] for r in rows]

    # -- links ----------------------------------------------------------------

    def next_link_seq(self) -> int:
        self._db.execute("UPDATE counters SET value = value + 1 WHERE name = 'link_seq'")
        return int(
            self._db.execute("SELECT value FROM counters WHERE name = 'link_seq'").fetchone()[0]
        )

    def insert_link(self, link: LinkRecord) -> int:
        """Insert with ``link_id`` assigned here; returns it."""
        cur = self._db.execute(
            "INSERT INTO links (program_id, type, params, attach_point, seq, pin_path,"
            " kernel_link_id, details, metadata, owner_uid, created_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                link.program_id, link.type, json.dumps(link.params), link.attach_point,
                link.seq, link.pin_path, link.kernel_link_id, json.dumps(link.details),
                json.dumps(link.metadata), link.owner_uid, link.created_at or now_iso(),
            ),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def update_link(self, link: LinkRecord) -> None:
        self._db.execute(
            "UPDATE links SET program_id=?, params=?, attach_point=?, pin_path=?,"
            " kernel_link_id=?,"
            " details=?, metadata=? WHERE link_id=?",
            (
                link.program_id, json.dumps(link.params), link.attach_point, link.pin_path,
                link.kernel_link_id,
                json.dumps(link.details), json.dumps(link.metadata), link.link_id,
            ),
        )

    def delete_link(self, link_id: int) -> None:
        self._db.execute("DELETE FROM links WHERE link_id = ?", (link_id,))

    def get_link(self, link_id: int) -> LinkRecord | None:
        row = self._db.execute("SELECT * FROM links WHERE link_id = ?", (link_id,)).fetchone()
        return _link(row) if row else None

    def list_links(
        self, *, program_id: int | None = None, attach_point: str | None = None
    ) -> list[LinkRecord]:
        sql, args = "SELECT * FROM links WHERE 1=1", []
        if program_id is not None:
            sql += " AND program_id = ?"
            args.append(program_id)
        if attach_point is not None:
            sql += " AND attach_point = ?"
            args.append(attach_point)
        return [_link(r) for r in self._db.execute(sql + " ORDER BY link_id", args)]

    def link_ids_by_program(self) -> dict[int, list[int]]:
        """Every program's link ids (one query, for listings)."""
        out: dict[int, list[int]] = {}
        for program_id, link_id in self._db.execute(
            "SELECT program_id, link_id FROM links ORDER BY link_id"
        ):
            out.setdefault(program_id, []).append(link_id)
        return out

    # -- dispatchers ---------------------------------------------------------

    def put_dispatcher(self, d: DispatcherRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO dispatchers VALUES (?,?,?,?,?,?,?)",
            (d.attach_point, d.type, d.mode, d.program_id, d.revision, d.pin_dir,
             d.attach_mode),
        )

    def delete_dispatcher(self, attach_point: str) -> None:
        self._db.execute("DELETE FROM dispatchers WHERE attach_point = ?", (attach_point,))

    def mark_dirty(self, attach_point: str, kind: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO dirty_attach_points VALUES (?, ?)",
                         (attach_point, kind))

    def clear_dirty(self, attach_point: str) -> None:
        self._db.execute("DELETE FROM dirty_attach_points WHERE attach_point = ?",
                         (attach_point,))

    def list_dirty(self) -> list[tuple[str, str]]:
        rows = self._db.execute("SELECT attach_point, type FROM dirty_attach_points")
        return [(r[0], r[1]) for r in rows]

    def list_dispatchers(self) -> list[DispatcherRecord]:
        rows = self._db.execute("SELECT * FROM dispatchers ORDER BY attach_point")
        return [DispatcherRecord(**dict(r)) for r in rows]


def _json_object(text: str) -> dict[str, Any]:
    # Most programs have no metadata or global data: skip the parser (listings).
    return {} if text == "{}" else dict(json.loads(text))


def _program(row: sqlite3.Row) -> ProgramRecord:
    d: dict[str, Any] = dict(row)
    d["global_data"] = {k: bytes.fromhex(v) for k, v in _json_object(d["global_data"]).items()}
    d["metadata"] = _json_object(d["metadata"])
    return ProgramRecord(**d)


def _link(row: sqlite3.Row) -> LinkRecord:
    d: dict[str, Any] = dict(row)
    for key in ("params", "details", "metadata"):
        d[key] = _json_object(d[key])
    return LinkRecord(**d)
