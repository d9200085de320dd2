"""consumer.db.queries without a server: the students' ids made again after the load, the write's binary COPY."""

from __future__ import annotations

import math
import struct

import numpy as np

from consumer.db.queries import _binary_rows, _compacted


def test_compacted_ids_are_the_same_ids_in_the_same_order():
    ids = ["s0000002", "10", "", "élève-1", "s0000001"]
    assert _compacted(list(ids)) == ids
    assert _compacted([]) == []
    assert _compacted([""]) == [""]


def read_binary_copy(data: bytes) -> list[tuple]:
    """PostgreSQL's binary COPY format read field by field with struct (the format's documentation)."""
    assert data[:11] == b"PGCOPY\n\xff\r\n\x00" and struct.unpack(">ii", data[11:19]) == (0, 0)
    at, rows = 19, []
    while True:
        (fields,) = struct.unpack_from(">h", data, at)
        at += 2
        if fields == -1:
            assert at == len(data)
            return rows
        row = []
        for f in range(fields):
            (length,) = struct.unpack_from(">i", data, at)
            at += 4
            if length == -1:
                row.append(None)
                continue
            raw = data[at:at + length]
            at += length
            row.append(raw.decode() if f == 0 else struct.unpack(">d", raw)[0])
        rows.append(tuple(row))


def test_the_writes_binary_rows_hold_each_text_and_number_and_nan_as_null():
    ids = ["s0000001", "", "élève-☃", "42"]
    theta = np.array([0.25, -1.5, 6.0, -0.0])
    se = np.array([0.3, math.nan, 1e-300, math.nan])
    assert read_binary_copy(_binary_rows(ids, theta, se)) == [
        ("s0000001", 0.25, 0.3), ("", -1.5, None), ("élève-☃", 6.0, 1e-300), ("42", -0.0, None)]
    assert read_binary_copy(_binary_rows([], np.zeros(0))) == []
    assert read_binary_copy(_binary_rows([""], np.zeros(1))) == [("", 0.0)]
