"""The event stream: ``events.subscribe`` keeps the connection open and the
daemon sends one JSON-RPC notification per change::

    {"jsonrpc":"2.0","method":"event","params":{"seq":3,"kind":"attached",...}}

Built only on the observer hooks, like any cross-cutting plugin: the daemon
registers an `EventBus` with its plugin manager. Observers run in the kernel
lane's worker thread; events cross into trio with `run_sync_soon`, which
does not wait: the kernel lane never waits on subscribers, and with none
there is no event at all.
A subscriber that cannot keep up (its queue of `QUEUE_SIZE` events is full)
gets a final ``overflow`` event and is dropped rather than slowing the daemon.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from datetime import UTC, datetime
from typing import Any

import trio

from bpfman.hookspecs import hookimpl
from bpfman.model.caller import Caller
from bpfman.model.records import Drift, LinkRecord, ProgramRecord
from bpfman.model.replies import Event, SubscribeReply
from bpfman.model.requests import EVENT_KINDS, SubscribeRequest

log = logging.getLogger("bpfman.events")

QUEUE_SIZE = 1024








class EventBus:
    """Observer plugin that fans events out to subscribed connections."""

    def __init__(self) -> None:
        self._seq = itertools.count(1)
        self._subscribers: list[tuple[frozenset[str], trio.MemorySendChannel[Event]]] = []
        self._token: trio.lowlevel.TrioToken | None = None  # the loop subscribers live on

    # -- observer hooks (kernel lane thread) ------------------------------

    def _publish(self, kind: str, **fields: Any) -> None:
        if not self._subscribers or self._token is None:
            return
        event = Event(seq=next(self._seq), time=datetime.now(UTC).isoformat(), kind=kind,
                      **fields)
        # FIFO with every other call from this thread, so events stay in order.
        with contextlib.suppress(trio.RunFinishedError):  # the daemon is stopping
            self._token.run_sync_soon(self._fan_out, event)

    @hookimpl
    def bpfman_program_loaded(self, program: ProgramRecord) -> None:
        self._publish("loaded", program_id=program.program_id, type=program.type,
                      detail=program.name)

    @hookimpl
    def bpfman_program_unloaded(self, program: ProgramRecord) -> None:
        self._publish("unloaded", program_id=program.program_id, type=program.type,
                      detail=program.name)

    @hookimpl
    def bpfman_link_attached(self, program: ProgramRecord, link: LinkRecord) -> None:
        self._publish("attached", program_id=program.program_id, link_id=link.link_id,
                      type=link.type, detail=link.attach_point)

    @hookimpl
    def bpfman_link_detached(self, program: ProgramRecord, link: LinkRecord) -> None:
        self._publish("detached", program_id=program.program_id, link_id=link.link_id,
                      type=link.type, detail=link.attach_point)

    @hookimpl
    def bpfman_link_updated(self, program: ProgramRecord, link: LinkRecord) -> None:
        self._publish("updated", program_id=program.program_id, link_id=link.link_id,
                      type=link.type, detail=str(link.params))

    @hookimpl
    def bpfman_state_repaired(self, drifts: list[Drift]) -> None:
        for drift in drifts:
            self._publish("repaired", detail=str(drift))

    # -- trio side ----------------------------------------------------------

    def _fan_out(self, event: Event) -> None:
        # Runs as a trio system callback: an exception here would crash the
        # whole daemon, so every way a subscriber can be gone is handled.
        for entry in list(self._subscribers):
            kinds, channel = entry
            if kinds and event.kind not in kinds:
                continue
            try:
                channel.send_nowait(event)
            except trio.WouldBlock:
                # The subscriber fell behind: drop it (its forwarder reports why).
                self._unsubscribe(entry)
                channel.close()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._unsubscribe(entry)  # its connection is gone
            except Exception:
                log.exception("dropping an event subscriber")
                self._unsubscribe(entry)

    def _unsubscribe(self, entry: tuple[frozenset[str], trio.MemorySendChannel[Event]]) -> None:
        with contextlib.suppress(ValueError):  # already removed
            self._subscribers.remove(entry)

    async def subscribe(self, caller: Caller, req: SubscribeRequest) -> SubscribeReply:
        from bpfman.model.errors import InvalidArgument
        from bpfman.rpc.server import current_connection

        unknown = sorted(set(req.kinds) - set(EVENT_KINDS))
        if unknown:
            raise InvalidArgument(f"unknown event kinds: {', '.join(unknown)}", field="kinds")
        connection = current_connection.get()
        connection.subscribed = True  # exempt from the idle timeout
        send, receive = trio.open_memory_channel[Event](QUEUE_SIZE)
        self._token = trio.lowlevel.current_trio_token()
        entry = (frozenset(req.kinds), send)
        self._subscribers.append(entry)

        async def forward() -> None:
            try:
                async with receive:
                    async for event in receive:
                        await connection.notify("event", event)
                # The channel was closed by _fan_out: the subscriber fell behind.
                await connection.notify("event", Event(
                    seq=0, time=datetime.now(UTC).isoformat(), kind="overflow",
                    detail="subscriber too slow; resubscribe"))
            finally:
                # However the connection ended (killed, closed, cancelled), stop
                # fanning out to it.
                self._unsubscribe(entry)
                send.close()

        connection.nursery.start_soon(forward)
        log.info("uid=%d pid=%d subscribed to events", caller.uid, caller.pid)
        return SubscribeReply(subscribed=True, kinds=list(req.kinds))
