"""pool.run's collector tuning: raised while items are worked on, restored after (the editor
server and the tests run in the same process long after a batch)."""

from __future__ import annotations

import gc

import pytest

from gradlint import pool


def test_young_collections_are_rarer_while_items_are_worked_on_and_restored_after():
    before = gc.get_threshold()
    seen = []
    out = pool.run(["a", "b"], 1, lambda chunk: [], lambda item: seen.append(gc.get_threshold()[0]) or item,
                   lambda result: result)
    assert out == ["a", "b"]
    assert seen == [max(before[0], pool.YOUNG_COLLECTION_EVERY)] * 2
    assert gc.get_threshold() == before


def test_thresholds_are_restored_when_an_item_raises():
    before = gc.get_threshold()

    def boom(item):
        raise ValueError(item)

    with pytest.raises(ValueError):
        pool.run(["a"], 1, lambda chunk: [], boom, lambda result: result)
    assert gc.get_threshold() == before


def test_a_higher_threshold_set_by_the_embedding_program_is_kept():
    before = gc.get_threshold()
    gc.set_threshold(pool.YOUNG_COLLECTION_EVERY * 2, *before[1:])
    try:
        seen = []
        pool.run(["a"], 1, lambda chunk: [], lambda item: seen.append(gc.get_threshold()[0]), lambda r: r)
        assert seen == [pool.YOUNG_COLLECTION_EVERY * 2]
    finally:
        gc.set_threshold(*before)


# -- large items: one at a time across a pool's workers --------------------------------------

def _large_chunk(items):
    """Pool work: each item holds the large-item turn for a while; returns when it held it."""
    import time

    out = []

    def work(item):
        with pool.large_item(pool.LARGE_ITEM_CHARS if item.startswith("large") else 10):
            start = time.monotonic()
            time.sleep(0.15)
            return (item, start, time.monotonic())

    out.extend(pool.work_through(items, work))
    return out


def test_large_items_never_run_in_two_workers_at_once():
    items = [f"large{i}" for i in range(6)] + [f"small{i}" for i in range(10)]
    out = pool.run(items, 2, _large_chunk, lambda item: _large_chunk([item])[0], lambda result: result[0])
    assert sorted(r[0] for r in out) == sorted(items)
    large = sorted((start, end) for name, start, end in out if name.startswith("large"))
    for (_, end), (start, _) in zip(large, large[1:]):
        assert start >= end, large


def test_an_item_whose_turn_is_taken_is_put_after_the_rest_of_its_chunk(monkeypatch):
    class Taken:
        """A lock another worker holds until the first put-off item asks to wait for it."""

        def __init__(self):
            self.waits = 0

        def acquire(self, block=True, timeout=None):
            if block:
                self.waits += 1
            return block

        def release(self):
            pass

    lock = Taken()
    monkeypatch.setattr(pool, "_LARGE", lock)
    ran = []

    def work(item):
        with pool.large_item(pool.LARGE_ITEM_CHARS if item.startswith("large") else 1):
            ran.append(item)
            return item

    assert pool.work_through(["large-a", "b", "large-c", "d"], work) == ["b", "d", "large-a", "large-c"]
    assert ran == ["b", "d", "large-a", "large-c"] and lock.waits == 2
    assert pool._may_put_off  # the next chunk may put items off again


def test_outside_a_pool_large_items_just_run():
    assert pool._LARGE is None
    with pool.large_item(pool.LARGE_ITEM_CHARS * 10):
        pass
    assert pool.work_through(["a"], lambda item: item * 2) == ["aa"]
