"""Live updates: one poller per followed thing (a run, the runs list, a live board), shared by every client.

A poller wakes every ``interval`` seconds, asks for a cheap signature (a few ``stat`` calls: the ledger and its
WAL, ``summary.json``, the lock file), and only when it moved reads the state again (in a worker thread, so a
slow disk never stalls other streams), renders it and hands the same message to every subscriber's queue. It
stops when its last subscriber leaves. A subscriber whose queue is full is dropped; its browser's EventSource
reconnects and starts again from a full message. ``refresh_s`` forces a read now and then even without a
change (a killed run turns from running to aborted without touching its ledger).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CLOSING", "Hub", "Poller", "sse"]

QUEUE_MAX = 64


def sse(event: str, data: Any) -> str:
    """One server-sent event; the data is JSON (one line, so no newline in it can end the event early)."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@dataclass
class Poller:
    """Follows one thing: ``signature()`` is cheap, ``render(previous)`` returns (full message, delta message)
    where the delta holds only what changed since ``previous`` (the last full message's payload)."""

    signature: Callable[[], Hashable]
    render: Callable[[dict[str, Any] | None], tuple[dict[str, Any], dict[str, Any] | None]]
    interval: float = 0.25
    refresh_s: float = 30.0
    subscribers: set[asyncio.Queue[str]] = field(default_factory=set)
    last: dict[str, Any] | None = None
    task: asyncio.Task[None] | None = None
    sig: Hashable = None  # the signature when the state was last read
    reads: int = 0  # how often the state was read (tests and the perf script count them)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # clients arriving together: one first read

    async def subscribe(self) -> tuple[asyncio.Queue[str], str]:
        """A queue of later messages and the full message to send first."""
        queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_MAX)
        async with self.lock:
            if self.last is None:
                await self._read()
        self.subscribers.add(queue)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._loop())
        assert self.last is not None
        return queue, sse("state", self.last)

    def unsubscribe(self, queue: asyncio.Queue[str]) -> None:
        self.subscribers.discard(queue)

    async def _read(self) -> dict[str, Any] | None:
        """Read and render the state; the signature is taken first, so a change during the read is seen next."""
        self.reads += 1
        self.sig = await asyncio.to_thread(self.signature)
        full, delta = await asyncio.to_thread(self.render, self.last)
        self.last = full
        return delta

    async def _loop(self) -> None:
        forced = time.monotonic()
        while self.subscribers:
            await asyncio.sleep(self.interval)
            now_sig = await asyncio.to_thread(self.signature)
            if now_sig == self.sig and time.monotonic() - forced < self.refresh_s:
                continue
            forced = time.monotonic()
            delta = await self._read()
            if not delta:
                continue
            message = sse("delta", delta)
            for queue in list(self.subscribers):
                try:
                    queue.put_nowait(message)
                except asyncio.QueueFull:  # a stalled client: it reconnects and gets a full message
                    self.subscribers.discard(queue)
        self.last = None  # nobody follows: the next subscriber reads afresh


CLOSING = ""  # put in every subscriber's queue when the server shuts down: its stream ends


class Hub:
    """The pollers of one server, by key; created on first use."""

    def __init__(self) -> None:
        self.pollers: dict[str, Poller] = {}
        self.closing = False  # the server is shutting down: streams end (else uvicorn waits, then cancels them)

    def shut(self) -> None:
        """End every open stream now: event streams get ``CLOSING``, log streams see ``closing``."""
        self.closing = True
        for poller in self.pollers.values():
            for queue in list(poller.subscribers):
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(CLOSING)

    def poller(self, key: str, make: Callable[[], Poller]) -> Poller:
        found = self.pollers.get(key)
        if found is None:
            found = self.pollers[key] = make()
        return found

    async def close(self) -> None:
        for poller in self.pollers.values():
            poller.subscribers.clear()
            if poller.task is not None:
                poller.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await poller.task
