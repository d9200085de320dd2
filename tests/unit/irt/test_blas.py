"""consumer.irt.blas: OpenBLAS's thread count inside and after ``limited``, as OpenBLAS itself reports it."""

from __future__ import annotations

import threading

import pytest
import scipy.linalg  # noqa: F401  (loads scipy's OpenBLAS, as the standard errors do)

from consumer.irt import blas


def counts() -> list[int]:
    return [get() for get, _ in blas._libraries()]


@pytest.fixture
def two_threads():
    """Every loaded OpenBLAS at two threads for the test (one-core machines cannot show a limit)."""
    if not blas._libraries():
        pytest.skip("no OpenBLAS loaded in this process")
    before = counts()
    for _, set_ in blas._libraries():
        set_(2)
    if any(count != 2 for count in counts()):
        pytest.skip("this OpenBLAS was built for one thread")
    yield
    for (_, set_), count in zip(blas._libraries(), before):
        set_(count)


def test_one_thread_inside_and_the_count_back_after(two_threads):
    with blas.limited(1):
        assert counts() == [1] * len(counts())
    assert counts() == [2] * len(counts())


def test_a_nested_or_concurrent_block_keeps_the_limit_until_the_last_ends(two_threads):
    inner_done = threading.Event()
    seen = []

    def other():
        with blas.limited(1):
            inner_done.set()
        seen.append(counts())

    with blas.limited(1):
        thread = threading.Thread(target=other)
        thread.start()
        inner_done.wait(5)
        thread.join(5)
        assert seen == [[1] * len(counts())]  # the other block ended first: the limit holds
        assert counts() == [1] * len(counts())
    assert counts() == [2] * len(counts())
