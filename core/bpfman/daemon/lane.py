"""The kernel lane: one blocking call at a time, shared fairly between uids.

Kernel mutations and the store must not interleave, so the daemon runs its
blocking calls one at a time. Waiting calls are served round-robin by the
caller's uid rather than first come, first served: a uid with many calls
queued (many connections, batches, slow loads) delays another uid by at most
one of its calls, not by all of them.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio


class FairLane:
    def __init__(self) -> None:
        self._held = False
        self._waiting: dict[int, collections.deque[trio.Event]] = {}
        self._turns: collections.deque[int] = collections.deque()  # uids with waiters

    @asynccontextmanager
    async def turn(self, uid: int) -> AsyncIterator[None]:
        """Hold the lane for the block, after the waiting uids' turns."""
        await self._acquire(uid)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, uid: int) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        if not self._held:  # free means no one waits: release hands over directly
            self._held = True
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        event = trio.Event()
        queue = self._waiting.setdefault(uid, collections.deque())
        queue.append(event)
        if len(queue) == 1:
            self._turns.append(uid)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():  # handed over as we were cancelled: pass it on
                self._release()
            else:
                queue.remove(event)
                if not queue:
                    del self._waiting[uid]
                    self._turns.remove(uid)
            raise

    def _release(self) -> None:
        if not self._turns:
            self._held = False
            return
        uid = self._turns.popleft()
        queue = self._waiting[uid]
        event = queue.popleft()
        if queue:
            self._turns.append(uid)  # its next call waits for the other uids' turns
        else:
            del self._waiting[uid]
        event.set()  # the lane stays held: it passes to that call
