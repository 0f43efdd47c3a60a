"""The store's SQLite connection: opened in WAL mode (several agent processes read while one
writes), read-only where the file cannot be written, checked at open, with explicit
`BEGIN IMMEDIATE` write transactions, and SQLite's errors turned into one StoreError line.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ParamSpec, TypeVar

from localsweep.rows import DB_NAME, SCHEMA, StoreError, corrupt_line

P = ParamSpec("P")
T = TypeVar("T")


def faults(method: Callable[P, T]) -> Callable[P, T]:
    """SQLite's errors (a full disk, a read-only file, a corrupt page) as one StoreError line."""

    @functools.wraps(method)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(*args, **kwargs)
        except (sqlite3.DatabaseError, json.JSONDecodeError, UnicodeDecodeError) as err:
            store = args[0]
            assert isinstance(store, Database)
            why = str(err).splitlines()[0] if str(err) else type(err).__name__
            if any(w in why for w in ("full", "readonly", "read-only", "locked", "I/O")):
                raise StoreError(f"{store.path}: cannot {method.__name__}: {why}") from None
            # Anything else that a read or write finds in the file: damaged pages or rows.
            raise StoreError(corrupt_line(store.path, why)) from None

    return wrapped


class Database:
    """One connection to the store's file; `Store` (localsweep/store.py) reads and writes it.

    A store that cannot be written (a read-only folder or file system) opens read-only, so
    `status` and `report` still work; a corrupt one is refused at open (`PRAGMA quick_check`).
    """

    def __init__(self, root: Path | str, create: bool = True) -> None:
        self.root = Path(root)
        self.path = self.root / DB_NAME
        if not create and not self.path.is_file():
            raise KeyError(
                f"no store in {self.root} (no {DB_NAME}); `localsweep run FILE` makes one"
            )
        self.readonly = False
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.db = self._open()
        except (sqlite3.OperationalError, OSError) as err:
            if not self.path.is_file():
                raise StoreError(f"{self.path}: cannot create the store: {err}") from None
            self.db, self.readonly = self._open_readonly(), True
        except sqlite3.DatabaseError as err:
            raise StoreError(corrupt_line(self.path, str(err))) from None
        self._check()

    def _open(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE in claims).
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA busy_timeout=30000")
        # WAL + NORMAL: a commit survives a crashed process (not a power cut) without an fsync.
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        return db

    def _open_readonly(self) -> sqlite3.Connection:
        # immutable: nothing can change it under us, and SQLite needs no -shm file it could
        # not create on a read-only file system.
        db = sqlite3.connect(f"file:{self.path}?mode=ro&immutable=1", uri=True)
        db.row_factory = sqlite3.Row
        return db

    def _check(self) -> None:
        try:
            rows = [r[0] for r in self.db.execute("PRAGMA quick_check").fetchall()]
        except sqlite3.DatabaseError as err:
            raise StoreError(corrupt_line(self.path, str(err))) from None
        if rows != ["ok"]:
            raise StoreError(corrupt_line(self.path, rows[0]))

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
