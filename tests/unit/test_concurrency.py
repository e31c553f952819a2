"""`atrest.core.concurrency`: the memory budget and the per-thread pool behind EncryptObject's
concurrent batches. Orders of events, never timings."""

from __future__ import annotations

import threading

import pytest

from atrest.core.concurrency import Budget, Pool

BOUND = 30  # seconds a waiting step may take before the test fails (never reached when it passes)


def wait_for(budget: Budget, predicate) -> None:
    with budget._changed:
        assert budget._changed.wait_for(predicate, timeout=BOUND)


def test_a_whole_budget_holder_runs_alone_and_small_ones_queue_behind_it():
    budget = Budget(4)
    order: list[str] = []

    def large():
        with budget.hold(whole=True):
            order.append(f"large in, {budget.free} free")
        order.append("large out")

    def small():
        with budget.hold(whole=False):
            order.append("small in")

    with budget.hold(whole=False):
        waiting_large = threading.Thread(target=large)
        waiting_large.start()
        wait_for(budget, lambda: budget.waiting_whole == 1)
        later_small = threading.Thread(target=small)
        later_small.start()
        # A large object waits for every slot; meanwhile no new small object starts, so a
        # stream of small ones cannot keep it waiting.
        assert budget.free == 3 and order == []
    waiting_large.join(BOUND)
    later_small.join(BOUND)
    assert order == ["large in, 0 free", "large out", "small in"]
    assert budget.free == 4


def test_small_holders_share_the_budget():
    budget = Budget(2)
    with budget.hold(whole=False), budget.hold(whole=False):
        assert budget.free == 0
    assert budget.free == 2


def test_a_pool_hands_each_user_its_own_item_the_warmest_first_and_configures_every_item():
    built: list[object] = []
    pool = Pool(lambda: built.append(object()) or built[-1], size=2, first="warm")
    configured: list[object] = []
    pool.each(configured.append)
    assert configured == ["warm"]
    with pool.use() as first:
        with pool.use() as second:
            assert first == "warm" and second is built[0]
            with pytest.raises(RuntimeError):
                with pool.use():
                    pass
    assert configured == ["warm", built[0]]  # built later, configured too
    with pool.use() as again:
        assert again == "warm"  # a lone user gets the warm one (its branch key cache)
    assert pool.built == ["warm", built[0]]


def test_a_pool_item_that_fails_to_build_leaves_its_slot_free():
    attempts = []

    def build():
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("no credentials yet")
        return "built"

    pool = Pool(build, size=1)
    with pytest.raises(RuntimeError):
        with pool.use():
            pass
    with pool.use() as item:
        assert item == "built"
