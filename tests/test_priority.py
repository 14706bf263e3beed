"""Priority scheduling on the loop (flowcoro.create_task(priority=...))."""
import asyncio

import pytest

import flowcoro
from flowcoro import Priority


async def _worker(tag, order, steps=3):
    for _ in range(steps):
        order.append((tag, flowcoro.priority.current_priority()))
        await asyncio.sleep(0)


def test_higher_priority_runs_first_within_an_iteration():
    order = []

    async def main():
        tasks = [flowcoro.create_task(_worker("low", order), priority=Priority.LOW),
                 flowcoro.create_task(_worker("normal", order)),
                 flowcoro.create_task(_worker("high", order), priority=Priority.HIGH),
                 flowcoro.create_task(_worker("crit", order), priority=Priority.CRITICAL)]
        await asyncio.gather(*tasks)

    flowcoro.run(main())
    tags = [t for t, _ in order]
    assert tags == ["crit", "high", "normal", "low"] * 3
    assert dict(order) == {"crit": Priority.CRITICAL, "high": Priority.HIGH,
                           "normal": Priority.NORMAL, "low": Priority.LOW}


def test_low_priority_is_not_starved():
    """CRITICAL work that keeps rescheduling itself cannot hold back a LOW task."""
    progress = {"low": 0, "crit": 0}

    async def spinner():
        while progress["low"] < 50:
            progress["crit"] += 1
            await asyncio.sleep(0)

    async def low():
        for _ in range(50):
            progress["low"] += 1
            await asyncio.sleep(0)

    async def main():
        t1 = flowcoro.create_task(spinner(), priority=Priority.CRITICAL)
        t2 = flowcoro.create_task(low(), priority=Priority.LOW)
        await asyncio.wait_for(asyncio.gather(t1, t2), 5)

    flowcoro.run(main())
    assert progress["low"] == 50
    # One step of each per iteration: the spinner is at most one step ahead.
    assert progress["crit"] <= 51


def test_callbacks_inherit_task_priority():
    seen = []

    async def main():
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        async def high():
            loop.call_soon(lambda: seen.append(flowcoro.priority.current_priority()))
            loop.call_soon(done.set_result, None)

        await flowcoro.create_task(high(), priority=Priority.HIGH)
        await done

    flowcoro.run(main())
    assert seen == [Priority.HIGH]


def test_bad_priority_is_a_value_error_and_closes_the_coroutine():
    async def main():
        coro = asyncio.sleep(0)
        with pytest.raises(ValueError, match="priority"):
            flowcoro.create_task(coro, priority=7)
        assert coro.cr_frame is None      # closed, no "never awaited" warning

    flowcoro.run(main())


def test_priority_on_a_foreign_loop_is_accepted_and_ignored():
    async def main():
        t = flowcoro.create_task(asyncio.sleep(0, "ok"), priority=Priority.HIGH)
        return await t

    assert asyncio.run(main()) == "ok"


def test_name_and_context_are_passed_through():
    import contextvars
    var = contextvars.ContextVar("v", default="unset")

    async def get():
        return var.get(), flowcoro.priority.current_priority()

    async def main():
        ctx = contextvars.copy_context()
        ctx.run(var.set, "from-ctx")
        t = flowcoro.create_task(get(), priority=Priority.LOW, name="named", context=ctx)
        assert t.get_name() == "named"
        return await t

    assert flowcoro.run(main()) == ("from-ctx", Priority.LOW)
