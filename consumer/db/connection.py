"""A connection for one step of a run, with the database's failures turned into the service's."""

from __future__ import annotations

import contextlib
from typing import Iterator

import sqlalchemy as sa

from ..errors import DatabaseLoginRefused
from .engine import unavailable


@contextlib.contextmanager
def opened(engine: sa.Engine, transaction: bool = False) -> Iterator[sa.Connection]:
    """A connection (in a transaction when asked, committed when the block ends without error).

    A connection that cannot be made or is lost becomes ``DatabaseUnavailable``;
    a refused login ``DatabaseLoginRefused`` wherever the run meets it (pg8000
    raises it as a ProgrammingError, which is otherwise a bug to re-raise).
    """
    try:
        with (engine.begin() if transaction else engine.connect()) as conn:
            yield conn
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        raise unavailable(engine, exc) from exc
    except sa.exc.DBAPIError as exc:
        problem = unavailable(engine, exc)
        if exc.connection_invalidated or isinstance(problem, DatabaseLoginRefused):
            raise problem from exc
        raise
