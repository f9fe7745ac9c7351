"""The kernel lane serves waiting uids round-robin (bpfman.daemon.lane)."""

from __future__ import annotations

import trio
import trio.testing

from bpfman.daemon.lane import FairLane


async def _run(lane: FairLane, order: list[str], uid: int, name: str,
               release: trio.Event | None = None) -> None:
    async with lane.turn(uid):
        order.append(name)
        if release is not None:
            await release.wait()
        await trio.sleep(0)


def test_a_uid_with_many_calls_queued_delays_another_by_one_call() -> None:
    async def main() -> list[str]:
        lane, order, first_done = FairLane(), [], trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_run, lane, order, 1000, "a0", first_done)
            await trio.testing.wait_all_tasks_blocked()
            for i in range(1, 6):  # uid 1000 queues five more
                nursery.start_soon(_run, lane, order, 1000, f"a{i}")
                await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(_run, lane, order, 2000, "b0")  # then uid 2000 one
            await trio.testing.wait_all_tasks_blocked()
            first_done.set()
        return order

    assert trio.run(main) == ["a0", "a1", "b0", "a2", "a3", "a4", "a5"]


def test_one_holder_at_a_time_and_cancelled_waiters_leave_the_line() -> None:
    async def main() -> None:
        lane, inside, most = FairLane(), [0], [0]

        async def hold(uid: int) -> None:
            async with lane.turn(uid):
                inside[0] += 1
                most[0] = max(most[0], inside[0])
                try:
                    await trio.sleep(0.001)
                finally:
                    inside[0] -= 1

        async with trio.open_nursery() as nursery:
            for i in range(30):
                nursery.start_soon(hold, i % 3)
            with trio.move_on_after(0.005):  # some waiters give up
                async with trio.open_nursery() as quitters:
                    for _ in range(10):
                        quitters.start_soon(hold, 7)
        assert most[0] == 1
        async with lane.turn(1):  # and the lane is free again
            pass

    trio.run(main)
