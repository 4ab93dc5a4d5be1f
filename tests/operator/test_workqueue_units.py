"""The work queue's resync of settled pipelines (issue 26): a resync runs no pass for a
pipeline whose last pass settled and that nothing touched since, yet every pipeline
still gets a pass at least every reread_seconds; anything else runs a full pass as before."""

import asyncio

from controllerfakes import eventually

from tspipe.handlers import NoDiffBase
from tspipe.workqueue import Outcome, WorkQueue, resync_may_skip, settled

KEY = ("ns", "p")


def test_settled_means_nothing_to_do_and_no_timer():
    assert settled(Outcome())
    assert not settled(Outcome(writes=1))
    assert not settled(Outcome(error="boom"))
    assert not settled(Outcome(retry_after=2.0))


def test_resync_may_skip_only_an_untouched_settled_recent_pass():
    assert resync_may_skip(False, read_at=100.0, now=110.0, resync=10, reread=300)
    assert not resync_may_skip(True, read_at=100.0, now=110.0, resync=10, reread=300)  # an event came
    assert not resync_may_skip(False, read_at=None, now=110.0, resync=10, reread=300)  # not settled
    # The next resync would come after reread is up: read now.
    assert not resync_may_skip(False, read_at=100.0, now=391.0, resync=10, reread=300)
    assert resync_may_skip(False, read_at=100.0, now=389.0, resync=10, reread=300)


def test_with_the_default_resync_every_resync_reads():
    assert not resync_may_skip(False, read_at=100.0, now=100.0, resync=300, reread=300)


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def make_queue(outcomes):
    """A queue over a fake pass that returns the given outcomes in turn (then settled ones)."""
    passes, skipped, clock = [], [], Clock()
    q = None

    async def work(key):
        passes.append(clock.t)
        q.schedule(key, outcomes.pop(0) if outcomes else Outcome())

    q = WorkQueue(
        work, unchanged=lambda key: skipped.append(clock.t), resync_seconds=10, reread_seconds=300, clock=clock
    )
    return q, passes, skipped, clock


async def settle(q):
    for _ in range(5):
        await asyncio.sleep(0)
    await asyncio.gather(*[t for t in q._workers.values() if not t.done()])


def resync(q):
    """One resync round, as the resync task does it."""
    q.resync_round()


def test_resync_of_a_settled_pipeline_runs_no_pass_until_reread_is_due():
    async def scenario():
        q, passes, skipped, clock = make_queue([])
        q.enqueue(KEY)  # an event: a full pass
        await settle(q)
        assert len(passes) == 1 and not skipped
        for _ in range(3):
            clock.t += 10
            resync(q)
            assert not q._workers, "a resync answered without a pass starts no task"
            await settle(q)
        assert len(passes) == 1 and len(skipped) == 3
        clock.t = 1000.0 + 295  # the next resync would be past reread: read again
        resync(q)
        await settle(q)
        assert len(passes) == 2 and len(skipped) == 3

    asyncio.run(scenario())


def test_an_event_a_write_an_error_or_a_timer_makes_the_next_resync_a_full_pass():
    async def scenario():
        q, passes, skipped, clock = make_queue(
            [Outcome(writes=2), Outcome(), Outcome(retry_after=5.0), Outcome(error="boom")]
        )
        q.enqueue(KEY)
        await settle(q)  # pass 1: wrote
        clock.t += 10
        resync(q)
        await settle(q)  # pass 2 (after writes): settled
        clock.t += 10
        q.enqueue(KEY)  # an event
        await settle(q)  # pass 3: asks for a timer
        clock.t += 10
        resync(q)
        await settle(q)  # pass 4: after a timer request; fails
        clock.t += 10
        resync(q)
        await settle(q)  # pass 5: after an error; settled
        clock.t += 10
        resync(q)
        await settle(q)  # skipped
        assert len(passes) == 5 and len(skipped) == 1
        for retry in q.state.values():
            if retry.timer:
                retry.timer.cancel()

    asyncio.run(scenario())


def test_an_event_during_a_pass_makes_the_next_one_full():
    async def scenario():
        q, passes, skipped, clock = make_queue([])
        gate = asyncio.Event()

        async def slow_work(key):
            passes.append(clock.t)
            if len(passes) == 1:
                q.enqueue(KEY)  # the watch delivers a change while the pass reads
                await gate.wait()
            q.schedule(key, Outcome())

        q.work = slow_work
        q.enqueue(KEY)
        await asyncio.sleep(0)
        gate.set()
        await settle(q)
        assert len(passes) == 2 and not skipped

    asyncio.run(scenario())


def test_a_forgotten_pipeline_leaves_nothing_behind():
    async def scenario():
        q, passes, _skipped, clock = make_queue([])

        async def deleted(key):
            passes.append(clock.t)
            q.forget(key)  # the pass found the pipeline gone
            q.schedule(key, Outcome())

        q.work = deleted
        q.enqueue(KEY)
        await settle(q)
        assert not q.settled_at and not q.touched and not q.known and not q._started

    asyncio.run(scenario())


def test_kopf_builds_no_diff_base():
    body = {"metadata": {"name": "x", "labels": {"a": "b"}}, "spec": {"replicas": 1}, "status": {}}
    assert NoDiffBase().build(body=body) == {}


# Issue 26: a deleted pipeline leaves nothing behind (a soak's leak)


def test_forget_while_a_pass_runs_keeps_no_retry_state():
    async def scenario():
        gate = asyncio.Event()
        q = None

        async def work(key):
            await gate.wait()
            q.schedule(key, Outcome(retry_after=5.0))

        q = WorkQueue(work)
        q.enqueue(("ns", "p"))
        await asyncio.sleep(0)
        q.forget(("ns", "p"))  # the pipeline's DELETED event during its pass
        gate.set()
        await eventually(lambda: not q._workers, "the pass ended")
        assert q.state == {} and q.settled_at == {}

    asyncio.run(scenario())


def test_finished_workers_are_dropped():
    async def scenario():
        async def work(key):
            q.schedule(key, Outcome())

        q = WorkQueue(work)
        for i in range(20):
            q.enqueue(("ns", f"p{i}"))
        await eventually(lambda: q._workers == {}, "every worker dropped")
        assert len(q.known) == 20

    asyncio.run(scenario())


def test_a_topics_recheck_timer_lets_the_pipeline_settle_and_still_fires():
    async def scenario():
        passes = []

        async def work(key):
            passes.append(key)
            q.schedule(key, Outcome(recheck_after=0.02))

        q = WorkQueue(work, resync_seconds=10, reread_seconds=300)
        q.enqueue(("ns", "p"))
        await eventually(lambda: passes, "the first pass")
        assert ("ns", "p") in q.settled_at, "settled: only a recheck timer"
        await eventually(lambda: len(passes) >= 2, "the recheck ran (as a touch: a full pass)")
        await q.stop()

    asyncio.run(scenario())


def test_settled_with_only_a_recheck_timer():
    assert settled(Outcome(recheck_after=300.0)) and Outcome(recheck_after=300.0).delay == 300.0
    assert not settled(Outcome(retry_after=2.0, recheck_after=300.0))
    assert Outcome(retry_after=2.0, recheck_after=300.0).delay == 2.0 and Outcome().delay is None


def test_a_pipeline_with_managed_topics_settles():
    from controllerfakes import _ready, make, run

    kube, ctl = make()
    run(ctl.reconcile("ns", "timestamps"))
    _ready(kube)
    run(ctl.reconcile("ns", "timestamps"))
    out = run(ctl.reconcile("ns", "timestamps"))
    assert out.writes == 0 and out.error is None and settled(out)
    assert out.recheck_after is not None and 0 < out.recheck_after <= 300, "the topics' recheck"


def test_a_pass_answered_unchanged_is_the_periodic_pass_until_the_next_is_due():
    async def scenario():
        q, passes, skipped, clock = make_queue([Outcome(writes=1), Outcome(unchanged=True)])
        q.enqueue(KEY)  # a full pass that wrote
        await settle(q)
        clock.t += 100
        q.enqueue(KEY)  # an event; the pass finds what it reads unchanged (controller.py)
        await settle(q)
        assert q.settled_at[KEY] == 1100.0, "settled as of the answer"
        clock.t = 1000.0 + 295  # within reread of the answer: skipped
        resync(q)
        await settle(q)
        assert len(passes) == 2 and len(skipped) == 1
        clock.t = 1100.0 + 295  # the next resync would be past reread of the answer: a pass
        resync(q)
        await settle(q)
        assert len(passes) == 3 and len(skipped) == 1

    asyncio.run(scenario())


def test_at_most_max_passes_run_at_once_and_every_key_gets_its_pass():
    async def scenario():
        running, most, done = set(), [0], []

        async def work(key):
            running.add(key)
            most[0] = max(most[0], len(running))
            await asyncio.sleep(0.01)
            running.discard(key)
            done.append(key)
            q.schedule(key, Outcome())

        q = WorkQueue(work, max_passes=3)
        for i in range(10):
            q.enqueue(("ns", f"p{i}"))
        q.enqueue(("ns", "p9"))  # again while it waits for a slot: still one pass
        await eventually(lambda: not q._workers, "every pass ran")
        assert most[0] == 3 and sorted(done) == sorted(("ns", f"p{i}") for i in range(10))

    asyncio.run(scenario())
