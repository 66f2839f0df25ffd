"""The outage spool: a local append-only file of batches the database could not take yet.

One JSON object per line: ``{"table": ..., "rows": n, "lines": "<COPY text>"}``. Each append is flushed and
fsync-ed before the write call returns, so a spooled record survives a crash. Batches are replayed in file
order; the file is emptied only after every batch is committed. A replay cut short leaves the file as it was,
and replaying a batch twice is harmless because every insert is idempotent by id.

A spool file belongs to one process at a time (an exclusive ``flock`` held while the storage is open). A second
process on the same data dir (``arbframe health`` next to the running service) gets its own file
(``<name>.<pid>.spool``). Files left by processes that died are adopted — appended to the new owner's spool in
order, then deleted — by the next storage that opens.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

log = logging.getLogger("arbframe.storage.postgres")


class SpoolBusy(OSError):
    """Another process holds this spool file."""


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: IO[str] | None = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held while open
        try:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._handle.close()
            self._handle = None
            raise SpoolBusy(f"{path} is in use by another process") from None
        self.depth = sum(len(lines) for _table, lines in self._read(repair=True))

    @classmethod
    def open_for(cls, path: Path) -> Spool:
        """The spool at ``path``, or a per-process one beside it when another process holds it; adopts the
        files of processes that died."""
        try:
            spool = cls(path)
        except SpoolBusy:
            spool = cls(path.with_name(f"{path.stem}.{os.getpid()}{path.suffix}"))
        for other in sorted(path.parent.glob(f"{path.stem}*{path.suffix}")):
            if other == spool.path:
                continue
            try:
                orphan = cls(other)
            except SpoolBusy:
                continue  # a live process owns it
            try:
                if orphan.depth:
                    log.warning("adopting %d records spooled by an earlier process in %s", orphan.depth, other)
                    for table, lines in orphan.batches():
                        spool.append({table: lines})
                if other != path:
                    other.unlink(missing_ok=True)
                else:
                    orphan.clear()
            finally:
                orphan.close()
        return spool

    def __len__(self) -> int:
        return self.depth

    def append(self, batch: dict[str, list[str]]) -> int:
        """Durably append every table's lines (in table order); returns the records added."""
        if self._handle is None:
            raise RuntimeError(f"spool {self.path} is closed")
        parts = []
        added = 0
        for table, lines in batch.items():
            if lines:
                parts.append(json.dumps({"table": table, "rows": len(lines), "lines": "".join(lines)}) + "\n")
                added += len(lines)
        if not parts:
            return 0
        self._handle.seek(0, os.SEEK_END)
        self._handle.write("".join(parts))
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.depth += added
        return added

    def batches(self) -> Iterator[tuple[str, list[str]]]:
        """(table, lines) in the order they were spooled."""
        yield from self._read(repair=False)

    def _read(self, *, repair: bool) -> Iterator[tuple[str, list[str]]]:
        if self._handle is None:
            return
        self._handle.flush()
        with open(self.path, encoding="utf-8") as handle:
            good_end = 0
            for number, raw in enumerate(handle, start=1):
                if not raw.endswith("\n"):
                    log.warning("%s:%d: torn last spool entry (interrupted write) ignored", self.path, number)
                    break
                good_end += len(raw.encode("utf-8"))
                try:
                    entry = json.loads(raw)
                    table, text = entry["table"], entry["lines"]
                except (ValueError, KeyError, TypeError) as exc:
                    log.error("%s:%d: unreadable spool entry skipped: %s", self.path, number, exc)
                    continue
                # split on "\n" only: COPY text escapes it, while other line breaks (U+2028...) are data
                yield table, [line + "\n" for line in text.split("\n")[:-1]]
        if repair and self.path.stat().st_size > good_end:
            os.truncate(self.path, good_end)

    def clear(self) -> None:
        """Everything was replayed: empty the file (durably)."""
        if self._handle is not None:
            self._handle.truncate(0)
            self._handle.flush()
            os.fsync(self._handle.fileno())
        self.depth = 0

    def close(self) -> None:
        if self._handle is not None:
            try:
                self._handle.close()  # releases the lock
            finally:
                self._handle = None
