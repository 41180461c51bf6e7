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
