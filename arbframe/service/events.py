"""Event-driven ticks: a symbol is evaluated as soon as either of its streamed books changes.

:class:`EventTicks` consumes each streaming venue's ``stream_order_books`` iterator (one task per venue), keeps the
newest book per (venue, symbol) and marks the symbol *dirty*. The first change after an evaluation schedules the
next one (``loop.call_soon``: a plain callback, no task to wake), which takes every dirty symbol at once and calls
``evaluate(symbols)`` -- synchronously, so the book changes that arrive in the same pass of the event loop (a burst
on both venues) are one evaluation, and the same symbol is never evaluated twice concurrently. A symbol not in the
configured set never triggers anything.

Venues that do not stream (REST polling, mock mode) contribute nothing here; the runner's interval tick remains
the fallback for them and does the FX refresh, heartbeat, storage flush and metrics (``docs/ARCHITECTURE.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

from arbframe.core.models import OrderBook

__all__ = ["EventTicks", "streaming_sources"]

log = logging.getLogger("arbframe.service.events")

BookSource = Callable[[], "AsyncIterator[OrderBook] | None"]


def streaming_sources(exchanges: Mapping[str, Any], symbols: Iterable[str], depth: int
                      ) -> dict[str, BookSource]:
    """The venues among ``exchanges`` that stream books (``use_websocket`` on and ``stream_order_books``), each as
    a callable opening its book iterator for ``symbols``."""
    wanted = [s.upper() for s in symbols]
    sources: dict[str, BookSource] = {}
    for name, exchange in exchanges.items():
        opener = getattr(exchange, "stream_order_books", None)
        if not getattr(exchange, "use_websocket", False) or not callable(opener):
            continue
        sources[name] = functools.partial(opener, list(wanted), depth)
    return sources


class EventTicks:
    """Coalesced, one-at-a-time evaluations of the symbols whose books changed (see the module docstring)."""

    def __init__(self, sources: Mapping[str, BookSource], symbols: Iterable[str],
                 evaluate: Callable[[set[str]], Any]) -> None:
        self.sources = dict(sources)
        self.symbols = frozenset(s.upper() for s in symbols)
        self.evaluate = evaluate
        self.books: dict[tuple[str, str], OrderBook] = {}  # (venue, symbol) -> newest streamed book
        self.evaluations = 0
        self.changes = 0  # book changes of configured symbols seen
        self._dirty: set[str] = set()  # symbols changed since their last evaluation
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None  # set while started
        self._pending: asyncio.Handle | None = None  # the evaluation scheduled, not run yet

    @property
    def running(self) -> bool:
        return self._loop is not None

    def start(self) -> None:
        """One consumer task per streaming venue (needs a running loop); evaluations follow their changes."""
        if self._loop is not None:
            return
        loop = self._loop = asyncio.get_running_loop()
        for venue, source in self.sources.items():
            self._tasks.append(loop.create_task(self._consume(venue, source), name=f"events-{venue}"))
        if self._dirty:
            self._schedule()
        log.info("[BOT] event-driven ticks: a book change on %s evaluates its symbol", ", ".join(self.sources))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        self._loop = None
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def changed(self, venue: str, book: OrderBook) -> None:
        """Record a book and mark its symbol for evaluation (what the consumers call for every book)."""
        symbol = book.symbol
        self.books[(venue, symbol)] = book
        if symbol not in self.symbols:
            return
        self.changes += 1
        self._dirty.add(symbol)
        if self._pending is None and self._loop is not None:
            self._pending = self._loop.call_soon(self._run)

    def _schedule(self) -> None:
        if self._pending is None and self._loop is not None:
            self._pending = self._loop.call_soon(self._run)

    async def _consume(self, venue: str, source: BookSource) -> None:
        iterator = source()
        if iterator is None:
            log.info("[BOT] %s does not stream books: its changes trigger no evaluation", venue)
            return
        changed = self.changed
        try:
            async for book in iterator:
                changed(venue, book)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the interval tick keeps trading on REST/latest books meanwhile
            log.warning("[BOT] %s book stream ended (%s: %s): event-driven ticks on it stop; the interval tick "
                        "goes on", venue, type(exc).__name__, exc)
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()

    def _run(self) -> None:
        """The scheduled evaluation: every symbol dirty so far, in one call."""
        self._pending = None
        dirty, self._dirty = self._dirty, set()
        if not dirty or self._loop is None:
            return
        try:
            self.evaluate(dirty)
        except Exception:  # one failed evaluation never stops the next
            log.exception("[BOT] event-driven evaluation of %s failed", ", ".join(sorted(dirty)))
        self.evaluations += 1
