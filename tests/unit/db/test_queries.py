"""consumer.db.queries without a server: the students' ids made again after the load."""

from __future__ import annotations

from consumer.db.queries import _compacted


def test_compacted_ids_are_the_same_ids_in_the_same_order():
    ids = ["s0000002", "10", "", "élève-1", "s0000001"]
    assert _compacted(list(ids)) == ids
    assert _compacted([]) == []
    assert _compacted([""]) == [""]
