"""Work cut into chunks that run at once, one per thread: how the compiled kernels use every core.

Apart from the kernels so that ``kernels`` and ``information_kernels``
import it without importing each other: each is compiled when imported,
and two processes can then compile them side by side (``consumer.warmup``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numba

_pool: ThreadPoolExecutor | None = None


def _forget_pool() -> None:
    global _pool
    _pool = None  # a forked child has none of its parent's threads


os.register_at_fork(after_in_child=_forget_pool)


def in_chunks(kernel, n_chunks: int, *args) -> list:
    """``[kernel(c, n_chunks, *args) for c in range(n_chunks)]``, the chunks at the same time.

    ``kernel`` is compiled with ``nogil=True``, so that the chunks run on
    as many cores; chunk 0 runs on the calling thread, the others on a pool
    of threads kept for the process.
    """
    global _pool
    if n_chunks <= 1:
        return [kernel(0, 1, *args)]
    if _pool is None or _pool._max_workers < n_chunks - 1:
        _pool = ThreadPoolExecutor(max(n_chunks - 1, numba.config.NUMBA_NUM_THREADS - 1),
                                   thread_name_prefix="kernel-chunk")
    others = [_pool.submit(kernel, c, n_chunks, *args) for c in range(1, n_chunks)]
    return [kernel(0, n_chunks, *args)] + [other.result() for other in others]
