"""``arbframe migrate csv-to-postgres``: import the CSV storage's files into PostgreSQL (seed D1 §3).

Idempotent: every row carries its record id and is inserted with ``ON CONFLICT DO NOTHING`` (positions: the
newer state wins, an older one never overwrites it), so a second run inserts nothing. Each batch is one
transaction. Every row read is imported, already present, conflicting (its id is stored with other content: the
stored row is kept and the id listed) or rejected: reported as ``file:line: reason`` and skipped. Rejected are
rows that do not parse (a stray quote costs its own line only), have invalid UTF-8 (reported, never stored as
replacement characters; a NUL is stored as U+FFFD like every other write, docs/DB_SCHEMA.md), a value of the
wrong form or out of the numeric range (``tables.NUMERIC_MAX_*``), or that PostgreSQL refuses. A missing CSV
file is skipped with a warning; progress goes to stderr; the per-table summary and the conflicts to stdout.
Exit status: 0 when the run completed (even with rejected rows), 1 on a fatal error (database unreachable or
lost), 2 on a config error.

Rows are parsed and validated on the calling thread while a writer thread streams the previous batch to the
database (COPY into a staging table, then ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``), so the two
overlap.
"""

from __future__ import annotations

import argparse
import csv
import logging
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from arbframe import TABLES, ArbframeError, hookimpl
from arbframe_storage_pg.tables import POSSESSIVE, SPECS, BadRow, RowConverter, csv_field, fast_csv_regex

log = logging.getLogger("arbframe.migrate")

ARBFRAME_API_VERSION = 1
MAX_REPORTED_PER_FILE = 1000
PROGRESS_EVERY_SECONDS = 2.0
_STATUS_RANK = {"open": 1, "closed": 2}
_INVALID_UTF8 = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of bytes that are not UTF-8


class MigrationError(ArbframeError):
    """A fatal error: nothing more can be migrated in this run (already committed batches stay)."""

    exit_status = 1


# ------------------------------------------------------------------------------------------------- results
@dataclass
class TableSummary:
    """One file's outcome: every row read is imported (``inserted``/``updated``), already present (the same
    row is stored), conflicting (its id is stored with other content; listed in ``conflicts``) or rejected
    (reported as ``file:line: reason``)."""

    table: str
    file: Path
    read: int = 0
    inserted: int = 0
    updated: int = 0
    present: int = 0
    conflicting: int = 0
    rejected: int = 0
    missing: bool = False
    note: str = ""
    conflicts: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        """Rows not imported because they are bad (the older name of ``rejected``)."""
        return self.rejected


@dataclass
class MigrationSummary:
    tables: list[TableSummary] = field(default_factory=list)
    dry_run: bool = False
    seconds: float = 0.0
    database_checked: bool = True

    def total(self, attr: str) -> int:
        return sum(getattr(t, attr) for t in self.tables)

    def get(self, table: str) -> TableSummary:
        for summary in self.tables:
            if summary.table == table:
                return summary
        raise KeyError(table)

    def format(self) -> str:
        ins, upd = ("would import", "would update") if self.dry_run else ("imported", "updated")
        headers = ["table", "read", ins, upd, "already present", "conflicting", "rejected", "note"]
        rows = []
        for t in self.tables:
            note = t.note or ("file not found" if t.missing else "")
            rows.append([t.table, t.read, t.inserted, t.updated, t.present, t.conflicting, t.rejected, note])
        rows.append(["total", self.total("read"), self.total("inserted"), self.total("updated"),
                     self.total("present"), self.total("conflicting"), self.total("rejected"),
                     f"{self.seconds:.1f} s"])
        widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

        def line(cells: list[Any]) -> str:
            out = [str(cells[0]).ljust(widths[0])]
            out += [str(c).rjust(w) for c, w in zip(cells[1:-1], widths[1:-1], strict=True)]
            out.append(str(cells[-1]))
            return "  ".join(out).rstrip()

        title = "CSV -> PostgreSQL migration" + (" (dry run: nothing written)" if self.dry_run else "")
        text = [title, line(headers), line(["-" * w for w in widths])]
        text += [line(r) for r in rows]
        if self.dry_run and not self.database_checked:
            text.append("(database not reachable: 'already present' not checked)")
        elif self.dry_run:
            text.append("(dry run: conflicts are found only when writing)")
        for t in self.tables:
            for cid in t.conflicts[:MAX_REPORTED_PER_FILE]:
                text.append(f"conflict: {t.file}: id {cid} is stored with other content; the stored row was kept")
            if len(t.conflicts) > MAX_REPORTED_PER_FILE:
                text.append(f"conflict: {t.file}: {len(t.conflicts) - MAX_REPORTED_PER_FILE} more")
        return "\n".join(text)


@dataclass
class _Batch:
    """Rows for one transaction. A piece is one CSV row, or (fast path) a run of rows read as one chunk;
    ``numbers`` is the first line number of each piece, ``counts`` its rows. ``ids``/``statuses`` are kept per
    row where they are needed (positions, dry runs), where every piece is one row."""

    pieces: list[str] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    rows: int = 0

    def add(self, text: str, number: int, count: int = 1) -> None:
        self.pieces.append(text)
        self.numbers.append(number)
        self.counts.append(count)
        self.rows += count

    def expanded(self) -> _Batch:
        """Every piece split into single rows (chunks hold only one-line rows)."""
        if all(c == 1 for c in self.counts):
            return self
        out = _Batch(ids=self.ids, statuses=self.statuses)
        for text, first, count in zip(self.pieces, self.numbers, self.counts, strict=True):
            if count == 1:
                out.add(text, first)
                continue
            for k, row in enumerate(text.split("\n")[:-1]):
                out.add(row + "\n", first + k)
        return out

    def halves(self) -> tuple[_Batch, _Batch]:
        half = len(self.pieces) // 2

        def part(sl: slice) -> _Batch:
            b = _Batch(self.pieces[sl], self.numbers[sl], self.counts[sl],
                       self.ids[sl] if self.ids else [], self.statuses[sl] if self.statuses else [])
            b.rows = sum(b.counts)
            return b

        return part(slice(0, half)), part(slice(half, None))


# ------------------------------------------------------------------------------------------------- writer
class _Writer:
    """The database side: one transaction per batch, on its own thread (or inline for dry runs)."""

    def __init__(self, settings: Any, *, dry_run: bool, report: Callable[[str], None]) -> None:
        from arbframe_storage_pg.db import BatchWriter, connect, ensure_schema, table_exists

        self.settings = settings
        self.dry_run = dry_run
        self.report = report
        self.conn: Any = None
        self.writer: BatchWriter | None = None
        self.available_tables: set[str] = set()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=2)
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        if dry_run:
            try:
                self.conn = connect(settings, readonly=True)
            except Exception as exc:
                log.warning("dry run: %s; 'already present' is not checked", exc)
                return
            self.available_tables = {t for t in SPECS if table_exists(self.conn, settings.schema, t)}
            self.conn.rollback()
        else:
            self.conn = connect(settings)  # PostgresUnavailable -> fatal
            ensure_schema(self.conn, settings)
            self.available_tables = set(SPECS)
        self.writer = BatchWriter(self.conn, settings.schema)

    @property
    def checked(self) -> bool:
        return self.conn is not None

    # ----------------------------------------------------------------------------------------- threading
    def start(self) -> None:
        if self.dry_run or self.conn is None:
            return
        self._thread = threading.Thread(target=self._loop, name="arbframe-migrate-writer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._failure is not None:
                continue  # drain after a fatal error
            try:
                self._write(*item)
            except BaseException as exc:
                self._failure = exc

    def submit(self, summary: TableSummary, batch: _Batch) -> None:
        if not batch.pieces:
            return
        if self._failure is not None:
            raise self._failure
        if self._thread is None:
            self._write(summary, batch)
        else:
            self._queue.put((summary, batch))

    def finish(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        from arbframe_storage_pg.db import safe_close

        safe_close(self.conn)
        if self._failure is not None:
            raise self._failure

    def abort(self) -> None:
        if self._thread is not None:
            self._failure = self._failure or MigrationError("aborted")
            self._queue.put(None)
            self._thread.join(timeout=30)
        from arbframe_storage_pg.db import safe_close

        safe_close(self.conn)

    # -------------------------------------------------------------------------------------------- writing
    def _write(self, summary: TableSummary, batch: _Batch) -> None:
        import psycopg2

        from arbframe_storage_pg.db import error_reason, is_connection_error

        table = summary.table
        if self.dry_run:
            self._count_dry(summary, batch.ids, batch.statuses)
            return
        assert self.writer is not None
        kinds: list[str] = []
        rows = sum(batch.counts)
        try:
            if table == "positions":
                kinds = self._classify_positions(batch.statuses, batch.ids,
                                                 self.writer.positions_state(set(batch.ids)))
            with self.conn.cursor() as cur:
                result = self.writer.write_table(cur, table, batch.pieces, fmt="csv", rows=rows,
                                                 find_conflicts=table != "positions")
            self.conn.commit()
        except psycopg2.Error as exc:
            self.writer.rolled_back()
            if is_connection_error(exc, self.conn):
                raise MigrationError(
                    f"lost the connection to PostgreSQL while writing {table}: {error_reason(exc)}; batches "
                    "already committed stay, re-run to continue (the migration is idempotent)"
                ) from None
            if rows == 1:
                summary.rejected += 1
                self.report(f"{summary.file}:{batch.numbers[0]}: refused by PostgreSQL: {error_reason(exc)}; "
                            "row skipped")
                return
            for half in batch.expanded().halves():
                self._write(summary, half)
            return
        if table == "positions":
            summary.inserted += kinds.count("inserted")
            summary.updated += kinds.count("updated")
            summary.present += kinds.count("present")
        else:
            summary.inserted += result.inserted
            summary.conflicting += len(result.conflicts)
            summary.conflicts.extend(result.conflicts)
            summary.present += result.rows - result.inserted - len(result.conflicts)

    def _classify_positions(self, statuses: list[str], ids: list[str], known: dict[str, str]) -> list[str]:
        """Per row, in file order: 'inserted' (new id), 'updated' (newer state) or 'present'."""
        out = []
        state = {pid: _STATUS_RANK.get(status, 0) for pid, status in known.items()}
        for status, pid in zip(statuses, ids, strict=True):
            rank = _STATUS_RANK.get(status, 0)
            have = state.get(pid)
            if have is None:
                out.append("inserted")
                state[pid] = rank
            elif rank > have:
                out.append("updated")
                state[pid] = rank
            else:
                out.append("present")
        return out

    def _count_dry(self, summary: TableSummary, ids: list[str], statuses: list[str]) -> None:
        known: set[str] = set()
        if self.conn is not None and summary.table in self.available_tables:
            from psycopg2 import sql

            with self.conn.cursor() as cur:
                if summary.table == "positions":
                    assert self.writer is not None
                    kinds = self._classify_positions(statuses, ids, self.writer.positions_state(set(ids)))
                    self.conn.rollback()
                    summary.inserted += kinds.count("inserted")
                    summary.updated += kinds.count("updated")
                    summary.present += kinds.count("present")
                    return
                cur.execute(
                    sql.SQL("SELECT id FROM {} WHERE id = ANY(%s)").format(
                        sql.Identifier(self.settings.schema, summary.table)
                    ),
                    (list(set(ids)),),
                )
                known = {row[0] for row in cur.fetchall()}
            self.conn.rollback()
        if summary.table == "positions":
            kinds = self._classify_positions(statuses, ids, {})
            summary.inserted += kinds.count("inserted")
            summary.updated += kinds.count("updated")
            summary.present += kinds.count("present")
            return
        seen = set(known)
        for pid in ids:
            if pid in seen:
                summary.present += 1
            else:
                summary.inserted += 1
                seen.add(pid)


# ------------------------------------------------------------------------------------------------- reading
class _Progress:
    def __init__(self, stream: TextIO | None, label: str) -> None:
        self.stream = stream
        self.label = label
        self.started = time.monotonic()
        self.last = self.started
        self.shown = False

    def tick(self, rows: int) -> None:
        now = time.monotonic()
        if self.stream is None or now - self.last < PROGRESS_EVERY_SECONDS:
            return
        self.last = now
        self.shown = True
        rate = rows / max(now - self.started, 1e-9)
        print(f"{self.label}: {rows:,} rows read ({rate:,.0f} rows/s)", file=self.stream, flush=True)

    def done(self, rows: int) -> None:
        if self.stream is not None and self.shown:
            elapsed = time.monotonic() - self.started
            print(f"{self.label}: done, {rows:,} rows in {elapsed:.1f} s", file=self.stream, flush=True)


CHUNK_CHARS = 1 << 21


#: The most physical lines one CSV record may span (a quoted field with line breaks, e.g. an error's detail).
MAX_RECORD_LINES = 10_000
STRAY_QUOTE = "unbalanced quote (a stray '\"'; the lines after it are read as rows of their own)"


def _field_count(text: str) -> int:
    """Fields in ``text`` read as one CSV record (-1 if it is not one: e.g. it ends inside quotes)."""
    try:
        return len(next(csv.reader([text], strict=True)))
    except (csv.Error, StopIteration):
        return -1


def _records(lines: Sequence[str], first_number: int, width: int | None = None) -> Iterator[tuple[int, str, str]]:
    """(first line number, record text without its line break, problem) for each CSV record.

    A record is one physical line unless a quoted field spans lines. A line whose quotes do not balance starts a
    multi-line record only if the lines up to the balancing quote read as one record of ``width`` fields;
    otherwise the line alone is the record, and if it is not a record of ``width`` fields either it is refused
    (``problem`` says so) and reading goes on at the next line: a stray quote costs its own row, never the rest
    of the file. ``problem`` is "torn" for a last record the file ends in the middle of (no final line break:
    an interrupted write), "" for a record to check.
    """
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        start = first_number + i
        taken = 1
        if '"' in line and line.count('"') % 2:
            quotes = line.count('"')
            j = i + 1
            while quotes % 2 and j < n and j - i < MAX_RECORD_LINES:
                quotes += lines[j].count('"')
                j += 1
            joined = "".join(lines[i:j])
            if quotes % 2 == 0 and (width is None or _field_count(_strip_break(joined)[0]) == width):
                line, taken = joined, j - i
            elif width is not None and _field_count(_strip_break(line)[0]) != width:
                text, complete = _strip_break(line)
                yield start, text, STRAY_QUOTE if complete else "torn"
                i += 1
                continue
        i += taken
        text, complete = _strip_break(line)
        yield start, text, "" if complete else "torn"


def _strip_break(line: str) -> tuple[str, bool]:
    """The line without its terminator, and whether it had one."""
    if line.endswith("\n"):
        return (line[:-2] if line.endswith("\r\n") else line[:-1]), True
    if line.endswith("\r"):
        return line[:-1], True
    return line, False


def _split_lines(chunk: str) -> list[str]:
    """Lines ending in "\\n" (kept), plus an unterminated last one. Only "\\n" ends a line: other Unicode
    line breaks (U+2028 ...) are data, unlike ``str.splitlines``."""
    parts = chunk.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _chunks(handle: TextIO) -> Iterator[str]:
    """The file in pieces of about CHUNK_CHARS that end at a line break outside quotes (or at the end)."""
    while True:
        chunk = handle.read(CHUNK_CHARS)
        if not chunk:
            return
        if not chunk.endswith("\n"):
            chunk += handle.readline()
        extra = 0
        while chunk.count('"') % 2 and extra < MAX_RECORD_LINES:  # a stray quote: bounded, see _records
            more = handle.readline()
            if not more:
                break
            chunk += more
            extra += 1
        yield chunk


def _migrate_file(path: Path, summary: TableSummary, writer: _Writer, *, batch_size: int, limit: int | None,
                  report: Callable[[str], None], progress: TextIO | None, dry_run: bool = False) -> None:
    """Read, check and batch one table's CSV file.

    Fast path: a chunk of the file whose every line already has the exact form PostgreSQL reads and
    ``from_row`` accepts (one regex over the chunk) goes to ``COPY ... (FORMAT csv)`` as it is. Other chunks
    are taken line by line: matching lines as they are, the rest parsed with the ``csv`` module, checked column
    by column (bad ones reported as ``file:line: reason``) and re-spelt.
    """
    table = summary.table
    reported = 0

    def bad(line: int, reason: str) -> None:
        nonlocal reported
        summary.rejected += 1
        reported += 1
        if reported <= MAX_REPORTED_PER_FILE:
            report(f"{path}:{line}: {reason}; row skipped")
        elif reported == MAX_REPORTED_PER_FILE + 1:
            report(f"{path}: more than {MAX_REPORTED_PER_FILE} bad rows; only counting the rest")

    # surrogateescape: an invalid UTF-8 byte becomes a lone surrogate, so its row is refused and reported
    # instead of being stored with replacement characters (nothing is silently changed but NUL, see below)
    with path.open("r", newline="", encoding="utf-8", errors="surrogateescape") as handle:
        header_line = handle.readline()
        if not header_line.strip():
            summary.note = "empty file"
            return
        try:
            header = next(csv.reader([header_line.rstrip("\r\n")]))
            converter = RowConverter(table, header)
        except (csv.Error, StopIteration) as exc:
            summary.note = "unreadable header"
            report(f"{path}:1: {exc}; file skipped")
            return
        except BadRow as exc:
            summary.note = "bad header"
            report(f"{path}:1: {exc}; file skipped")
            return
        if converter.unknown:
            report(f"{path}:1: unknown column(s) {', '.join(converter.unknown)} ignored")
        line_rx = fast_csv_regex(table)
        fast = line_rx.fullmatch if converter.exact else None
        per_row = table == "positions" or dry_run  # ids (and statuses) needed row by row
        chunk_rx = None
        if fast is not None and not per_row and POSSESSIVE:
            # atomic groups: no backtracking state kept per line, so a 2 MB chunk is checked at regex speed.
            # Python 3.10 has no atomic groups: there every line is matched on its own (slower, same result).
            chunk_rx = re.compile(f"(?>(?:{line_rx.pattern})\r?\n)*+").fullmatch
        positions = table == "positions"
        batch = _Batch()
        ticker = _Progress(progress, path.name)
        seen = 0
        next_line = 2
        done = False

        def flush_if_full() -> None:
            nonlocal batch
            if batch.rows >= batch_size:
                writer.submit(summary, batch)
                batch = _Batch()

        for chunk in _chunks(handle):
            first_line = next_line
            count = chunk.count("\n")
            next_line += count
            if (chunk_rx is not None and (limit is None or seen + count <= limit)
                    and chunk.endswith("\n") and chunk_rx(chunk)):
                # every line is a plain, valid row: straight to COPY (CRLF -> LF: no quotes, so no data in it)
                seen += count
                summary.read += count
                batch.add(chunk.replace("\r\n", "\n"), first_line, count)
                flush_if_full()
                ticker.tick(summary.read)
                continue
            for number, text, problem in _records(_split_lines(chunk), first_line, converter.width):
                if limit is not None and seen >= limit:
                    done = True
                    break
                if not text:
                    continue  # blank line
                seen += 1
                summary.read += 1
                if problem == "torn":
                    bad(number, "torn last line (interrupted write)")
                    break
                if problem:
                    bad(number, problem)
                    continue
                if fast is not None and fast(text):
                    batch.add(text + "\n", number)
                    if per_row:
                        fields = text.split(",", 4)
                        batch.ids.append(fields[0])
                        if positions:
                            batch.statuses.append(fields[3])
                else:
                    invalid = _INVALID_UTF8.search(text)
                    if invalid is not None:
                        byte = ord(invalid.group()) - 0xDC00
                        bad(number, f"invalid UTF-8 (byte 0x{byte:02x} at character {invalid.start() + 1})")
                        continue
                    if "\x00" in text:  # PostgreSQL text cannot hold NUL: stored as U+FFFD (docs/DB_SCHEMA.md)
                        text = text.replace("\x00", "\ufffd")
                    try:
                        values = converter.values(next(csv.reader([text])))
                    except csv.Error as exc:
                        bad(number, f"unparsable CSV ({exc})")
                        continue
                    except BadRow as exc:
                        bad(number, str(exc))
                        continue
                    batch.add(",".join(csv_field(v) for v in values) + "\n", number)
                    if per_row:
                        batch.ids.append(values[0] or "")
                        if positions:
                            batch.statuses.append(values[3] or "")
                flush_if_full()
            ticker.tick(summary.read)
            if done:
                break
        writer.submit(summary, batch)
        ticker.done(summary.read)


def migrate_csv_to_postgres(
    settings: Any,
    data_dir: str | Path,
    *,
    dry_run: bool = False,
    limit: int | None = None,
    tables: Iterable[str] | None = None,
    batch_size: int | None = None,
    report: Callable[[str], None] | None = None,
    progress: TextIO | None = None,
) -> MigrationSummary:
    """Import ``<data_dir>/<table>.csv`` for every table (or ``tables``) into PostgreSQL.

    ``limit``: at most that many data rows per file. ``report`` receives ``file:line: reason`` messages
    (default: stderr). ``progress`` receives progress lines for long files (None: silent).
    Raises :class:`MigrationError` (or ``PostgresUnavailable``) on fatal errors.
    """
    report = report or (lambda msg: print(msg, file=sys.stderr, flush=True))
    data = Path(data_dir)
    wanted = list(tables) if tables else list(TABLES)
    for name in wanted:
        if name not in TABLES:
            raise MigrationError(f"unknown table {name!r}; expected some of {', '.join(TABLES)}")
    summary = MigrationSummary(dry_run=dry_run)
    started = time.monotonic()
    writer = _Writer(settings, dry_run=dry_run, report=report)
    summary.database_checked = writer.checked
    writer.start()
    try:
        for table in wanted:
            path = data / f"{table}.csv"
            table_summary = TableSummary(table, path)
            summary.tables.append(table_summary)
            if not path.is_file():
                table_summary.missing = True
                log.warning("%s not found; %s skipped", path, table)
                continue
            _migrate_file(path, table_summary, writer, batch_size=batch_size or settings.migrate_batch_size,
                          limit=limit, report=report, progress=progress, dry_run=dry_run)
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    summary.seconds = time.monotonic() - started
    return summary


# ---------------------------------------------------------------------------------------------------- CLI
@hookimpl
def arbframe_register_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("migrate", help="move recorded data between storages (PostgreSQL plugin)")
    actions = parser.add_subparsers(dest="migrate_action", metavar="ACTION", required=True)
    csv_pg = actions.add_parser(
        "csv-to-postgres",
        help="import the CSV files into PostgreSQL (idempotent)",
        description="Import storage.csv.data_dir/<table>.csv into the PostgreSQL database of storage.postgres. "
        "Safe to re-run: rows already present are left alone.",
    )
    csv_pg.add_argument(
        "--config", "-c", dest="configs", action="append", default=[], metavar="FILE",
        help="YAML config overlaid on the embedded defaults (repeat to overlay several, in order)",
    )
    csv_pg.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    csv_pg.add_argument("--dry-run", action="store_true", help="read and check everything, write nothing")
    csv_pg.add_argument("--limit", type=_positive_int, metavar="N", help="only the first N rows of each file")
    csv_pg.add_argument("--data-dir", metavar="DIR", help="CSV directory (default: storage.csv.data_dir)")
    csv_pg.add_argument("--tables", metavar="T1,T2", help=f"only these tables (default: {','.join(TABLES)})")
    csv_pg.add_argument("--batch-size", type=_positive_int, metavar="N",
                        help="rows per transaction (default: storage.postgres.migrate_batch_size)")
    csv_pg.set_defaults(handler=run_csv_to_postgres)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _load_config(paths: list[str]) -> Mapping[str, Any]:
    import arbframe

    return arbframe.load_config(paths)  # type: ignore[no-any-return]


def run_csv_to_postgres(args: argparse.Namespace) -> int:
    from arbframe import ConfigError
    from arbframe_storage_pg.db import PostgresUnavailable
    from arbframe_storage_pg.settings import Settings

    config = _load_config(list(args.configs or []))
    storage = config.get("storage") or {}
    data_dir = args.data_dir or (storage.get("csv") or {}).get("data_dir") or "data"
    section = storage.get("postgres") or {}
    _validate_section(section)
    try:
        settings = Settings.from_section(section, data_dir)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    tables = [t.strip() for t in args.tables.split(",") if t.strip()] if args.tables else None
    print(f"migrating CSV files in {data_dir} -> PostgreSQL {_where(settings)}"
          + (" (dry run)" if args.dry_run else "") + (f", first {args.limit} rows per file" if args.limit else ""),
          file=sys.stderr, flush=True)
    try:
        summary = migrate_csv_to_postgres(
            settings, data_dir, dry_run=args.dry_run, limit=args.limit, tables=tables,
            batch_size=args.batch_size, progress=sys.stderr,
        )
    except PostgresUnavailable as exc:
        print(f"arbframe migrate: error: {exc}", file=sys.stderr)
        return 1
    except MigrationError as exc:
        print(f"arbframe migrate: error: {exc}", file=sys.stderr)
        return exc.exit_status
    print(summary.format())
    return 0


def _validate_section(section: Mapping[str, Any]) -> None:
    """The section against the plugin's schema (the kernel validates it only when postgres is the backend)."""
    from jsonschema import Draft202012Validator

    from arbframe import ConfigError
    from arbframe_storage_pg.settings import CONFIG_SCHEMA

    errors = sorted(Draft202012Validator(CONFIG_SCHEMA).iter_errors(section), key=lambda e: list(e.path))
    if errors:
        error = errors[0]
        path = ".".join(["storage", "postgres", *map(str, error.absolute_path)])
        secret = error.schema.get("writeOnly") if isinstance(error.schema, Mapping) else False
        detail = error.validator if secret else error.message
        raise ConfigError(f"config error: {path}: {detail}")


def _where(settings: Any) -> str:
    from arbframe_storage_pg.db import endpoint

    return f"{endpoint(settings.dsn)} schema {settings.schema!r}"
