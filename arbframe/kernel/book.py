"""One writer per book: who owns (store, venue pair, symbol) and how a second runner is turned away.

A *book* is what one runner trades: a venue pair and a set of symbols, recorded in one store (a CSV data dir, a
PostgreSQL schema). Two runners on the same book would both resume and close the same open positions, so a runner
takes a lock per (store, venue pair, symbol) before it trades, and a second runner whose symbols overlap exits with
status 2, naming the holder (host, pid, since when). Runners with disjoint symbol sets share a store freely; each
stamps its ``instance_id`` on every record it writes, so PnL totals are per instance.

Storage drivers supply the lock (:meth:`arbframe.Storage.lock_book`): the CSV storage a lock file per symbol
(:class:`FileBookLock`, ``flock`` on ``<data_dir>/locks/...``; the kernel releases it on exit and the operating
system releases it when the process dies), the PostgreSQL storage an advisory lock per symbol.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from arbframe.core.errors import ArbframeError
from arbframe.core.models import Position, utcnow


class BookLocked(ArbframeError):
    """Another runner holds (part of) this book: the service exits 2, naming it."""

    exit_status = 2


@dataclass(frozen=True)
class Holder:
    """Who holds a book lock."""

    instance_id: str
    host: str
    pid: int
    since: str

    @classmethod
    def me(cls, instance_id: str) -> Holder:
        return cls(instance_id, socket.gethostname(), os.getpid(), utcnow().isoformat(timespec="seconds"))

    def describe(self) -> str:
        return f"instance {self.instance_id!r} on host {self.host} pid {self.pid} since {self.since}"

    def to_json(self) -> str:
        return json.dumps({"instance_id": self.instance_id, "host": self.host, "pid": self.pid, "since": self.since})

    @classmethod
    def from_json(cls, text: str) -> Holder | None:
        try:
            data = json.loads(text)
            return cls(str(data["instance_id"]), str(data["host"]), int(data["pid"]), str(data["since"]))
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class BookKey:
    """What a runner trades: the venue pair and its symbols (sorted, upper case)."""

    domestic: str
    foreign: str
    symbols: tuple[str, ...]
    instance_id: str = field(default="", compare=False)

    def parts(self) -> list[str]:
        """One lock name per symbol, so overlapping symbol sets conflict and disjoint ones do not."""
        return [f"{self.domestic}-{self.foreign}-{symbol}" for symbol in self.symbols]

    def describe(self) -> str:
        return f"{self.domestic}/{self.foreign} {','.join(self.symbols)}"

    def holds(self, position: Position) -> bool:
        """``position`` is in this book (its venue pair, one of its symbols): the open positions a runner resumes."""
        return (position.symbol.upper() in self.symbols and position.domestic_exchange == self.domestic
                and position.foreign_exchange == self.foreign)

    def counts(self, position: Position) -> bool:
        """``position`` counts in this runner's PnL totals: written by its instance or, written before instance
        ids existed, on one of its symbols."""
        return position.instance_id == self.instance_id or (
            not position.instance_id and position.symbol.upper() in self.symbols)


def book_from_config(config: Mapping[str, Any]) -> BookKey:
    arb = config.get("arbitrage") or {}
    symbols = tuple(sorted({str(s).upper() for s in (arb.get("symbols") or [])}))
    domestic, foreign = str(arb.get("domestic", "upbit")), str(arb.get("foreign", "binance"))
    return BookKey(domestic, foreign, symbols, instance_id_from_config(config, domestic, foreign, symbols))


def instance_id_from_config(
    config: Mapping[str, Any], domestic: str | None = None, foreign: str | None = None,
    symbols: Sequence[str] | None = None,
) -> str:
    """``service.instance_id``, else ``<domestic>-<foreign>-<SYM+SYM>`` (stable while the book stays the same)."""
    explicit = (config.get("service") or {}).get("instance_id")
    if explicit:
        return str(explicit)
    if domestic is None or foreign is None or symbols is None:
        book = book_from_config(config)
        return book.instance_id
    return f"{domestic}-{foreign}-{'+'.join(symbols)}"


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", text)[:120]


class BookLock:
    """A held lock; :meth:`release` lets go (twice is harmless)."""

    def __init__(self, book: BookKey, where: str) -> None:
        self.book = book
        self.where = where

    def release(self) -> None:  # pragma: no cover - overridden
        pass

    def describe(self) -> str:
        return f"book {self.book.describe()} locked in {self.where}"


class FileBookLock(BookLock):
    """``flock`` on one file per symbol under ``directory``; each file holds its holder as JSON."""

    def __init__(self, directory: Path, book: BookKey) -> None:
        super().__init__(book, str(directory))
        self._handles: list[IO[str]] = []

    @classmethod
    def acquire(cls, directory: Path, book: BookKey) -> FileBookLock:
        """Take every symbol's lock or none; :class:`BookLocked` names the holder of the first one taken."""
        directory.mkdir(parents=True, exist_ok=True)
        lock = cls(directory, book)
        me = Holder.me(book.instance_id)
        try:
            for part in book.parts():
                path = directory / f"{safe_name(part)}.lock"
                handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held while the lock is held
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    handle.seek(0)
                    holder = Holder.from_json(handle.read())
                    handle.close()
                    who = holder.describe() if holder is not None else "another process"
                    raise BookLocked(
                        f"book {part} in {directory} is held by {who} (lock file {path}); one runner per book: "
                        "stop that runner or trade other symbols"
                    ) from None
                handle.seek(0)
                handle.truncate()
                handle.write(me.to_json() + "\n")
                handle.flush()
                lock._handles.append(handle)
        except BaseException:
            lock.release()
            raise
        return lock

    def release(self) -> None:
        for handle in self._handles:
            try:
                handle.close()  # closing drops the flock; the file stays (its content is only read under lock)
            except OSError:
                pass
        self._handles.clear()

