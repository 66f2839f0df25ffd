"""The outage spool: a local append-only file of batches the database could not take yet.

One JSON object per line: ``{"table": ..., "rows": n, "lines": "<COPY text>"}``. Each append is flushed and
fsync-ed before the write call returns, so a spooled record survives a crash. Batches are replayed in file
order; the file is emptied only after every batch is committed. A replay cut short leaves the file as it was,
and replaying a batch twice is harmless because every insert is idempotent by id.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("arbframe.storage.postgres")


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.depth = 0  # records (rows) waiting
        self._handle = None
        if path.exists():
            self.depth = sum(len(lines) for _table, lines in self._read(repair=True))

    def __len__(self) -> int:
        return self.depth

    def _open(self):  # type: ignore[no-untyped-def]
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open while spooling
        return self._handle

    def append(self, batch: dict[str, list[str]]) -> int:
        """Durably append every table's lines (in table order); returns the records added."""
        parts = []
        added = 0
        for table, lines in batch.items():
            if lines:
                parts.append(json.dumps({"table": table, "rows": len(lines), "lines": "".join(lines)}) + "\n")
                added += len(lines)
        if not parts:
            return 0
        handle = self._open()
        handle.write("".join(parts))
        handle.flush()
        os.fsync(handle.fileno())
        self.depth += added
        return added

    def batches(self) -> Iterator[tuple[str, list[str]]]:
        """(table, lines) in the order they were spooled."""
        self._close_handle()
        yield from self._read(repair=False)

    def _read(self, *, repair: bool) -> Iterator[tuple[str, list[str]]]:
        try:
            handle = open(self.path, encoding="utf-8")  # noqa: SIM115
        except FileNotFoundError:
            return
        with handle:
            good_end = 0
            for number, raw in enumerate(handle, start=1):
                if not raw.endswith("\n"):
                    log.warning("%s:%d: torn last spool entry (interrupted write) ignored", self.path, number)
                    break
                try:
                    entry = json.loads(raw)
                    table, text = entry["table"], entry["lines"]
                except (ValueError, KeyError, TypeError) as exc:
                    log.error("%s:%d: unreadable spool entry skipped: %s", self.path, number, exc)
                    good_end += len(raw.encode("utf-8"))
                    continue
                good_end += len(raw.encode("utf-8"))
                # split on "\n" only: COPY text escapes it, while other line breaks (U+2028...) are data
                yield table, [line + "\n" for line in text.split("\n")[:-1]]
        if repair and self.path.stat().st_size > good_end:
            with open(self.path, "r+b") as fix:
                fix.truncate(good_end)

    def clear(self) -> None:
        """Everything was replayed: empty the file (durably)."""
        self._close_handle()
        try:
            with open(self.path, "r+b") as handle:
                handle.truncate(0)
                handle.flush()
                os.fsync(handle.fileno())
        except FileNotFoundError:
            pass
        self.depth = 0

    def _close_handle(self) -> None:
        if self._handle is not None:
            try:
                self._handle.close()
            finally:
                self._handle = None

    def close(self) -> None:
        self._close_handle()
