"""The accept decision of gateway/accept_balance.py: the least-loaded live worker takes the next connection."""

from gateway.accept_balance import ABSENT, should_defer


def test_a_worker_holding_more_than_another_defers():
    assert should_defer([3, 2], 0)
    assert not should_defer([3, 2], 1)


def test_equal_counts_accept():
    assert not should_defer([2, 2], 0) and not should_defer([2, 2], 1)


def test_a_worker_that_is_not_running_is_ignored():
    # the other worker died (or is starting): this one must keep accepting
    assert not should_defer([5, ABSENT], 0)
    assert should_defer([5, ABSENT, 1], 0)
