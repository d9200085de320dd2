"""Calibration scopes: which part of the item bank one run calibrates, as its own scale.

A platform's bank holds several item banks (subjects, exams, grades). With
``MIRT_SCOPE_KEY`` naming a key of ``question.meta`` (say ``subject``), each
value of that key (``math``, ``english``) is a scope: a run calibrates the
questions of one scope with that scope's anchors, and what it writes (item
parameters, abilities, the run record, the run lock) is kept per scope. With
no key set, the whole bank is the one scope, named by the empty string in
the tables, and everything behaves as before scopes existed.

A request names its scope, or ``*`` for every scope present in the bank (a
fan-out, which the consumer turns into one request per scope); a request
naming none means the whole bank, which with a key set is every scope too.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from .errors import ConfigError, UnknownScope

if TYPE_CHECKING:
    import sqlalchemy as sa

#: The request's scope that means "every scope present in the bank".
EVERY_SCOPE = "*"
#: The run lock's advisory-lock key for the whole bank (kept from before scopes, so versions agree).
WHOLE_BANK_LOCK_KEY = 7_246_113_002
#: How many of the bank's scopes an unknown scope's error names before it only counts the rest.
_SCOPES_NAMED = 20
#: What a scope's name may be: what the request schema allows (printable, at most 100 characters).
_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,100}")


@dataclass(frozen=True)
class Scope:
    """One scale: the questions whose ``meta->>key`` is ``name``, or the whole bank (both empty)."""

    key: str = ""
    name: str = ""

    @property
    def whole_bank(self) -> bool:
        return not self.name

    @property
    def item_bank(self) -> str:
        """The item bank that holds this scope's scale (``bank_admin``), as a log line names it."""
        return "the item bank" if self.whole_bank else f"the item bank of {self.label}"

    @property
    def label(self) -> str:
        """How log lines and pages name it."""
        return "the whole bank" if self.whole_bank else f"scope {self.name} (meta.{self.key})"

    @property
    def lock_key(self) -> int:
        """The advisory-lock key of this scope's run lock: one per scope, the same on every replica."""
        if self.whole_bank:
            return WHOLE_BANK_LOCK_KEY
        digest = hashlib.sha256(f"mirt-scope\x00{self.name}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def as_dict(self) -> dict | None:
        """As ``model_spec["scope"]`` stores it (None for the whole bank)."""
        return None if self.whole_bank else {"key": self.key, "value": self.name}


WHOLE_BANK = Scope()


def valid_name(name: str) -> bool:
    return bool(_NAME.fullmatch(name)) and name != EVERY_SCOPE and name == name.strip()


def resolve(scope_key: str, requested: str | None) -> Scope:
    """The one scope a run calibrates, from ``MIRT_SCOPE_KEY`` and what the request or flag names.

    A ``ConfigError`` when they do not make one scope: a scope named with no
    key set, or every scope asked of a single run (``fan_out`` first).
    """
    if not scope_key:
        if requested and requested != EVERY_SCOPE:  # every scope of a bank without scopes: the whole bank
            raise ConfigError(f"the request names scope {requested!r} but MIRT_SCOPE_KEY is not set, so the bank "
                              "has no scopes", "set MIRT_SCOPE_KEY to the question.meta key whose values are the "
                              "scopes, or leave the scope out to calibrate the whole bank")
        return WHOLE_BANK
    if not requested or requested == EVERY_SCOPE:
        raise ConfigError(f"MIRT_SCOPE_KEY={scope_key}: a run calibrates one scope, and none was named",
                          "name one (--scope NAME, or \"scope\" in the request), or publish a request for every "
                          "scope (scope \"*\"), which the consumer fans out")
    if not valid_name(requested):
        raise ConfigError(f"scope {requested!r} is not a scope name (1 to 100 printable characters, not \"*\")")
    return Scope(scope_key, requested)


def unknown(scope: Scope, present: Sequence[str]) -> UnknownScope:
    """The error for ``scope`` when no question has it: its name, and the scopes the bank has (``present``).

    Such a request is a mistake (a typo, a scope renamed or retired), never
    a quiet week, which is a scope with questions but no answers in the
    window (a run recorded as skipped).
    """
    where = f"meta.{scope.key} (MIRT_SCOPE_KEY)"
    if not present:
        return UnknownScope(f"scope {scope.name!r} is not in the bank: no question has a value under {where}, so "
                            "the bank has no scopes", "check MIRT_SCOPE_KEY against question.meta")
    named = ", ".join(present[:_SCOPES_NAMED])
    rest = f" and {len(present) - _SCOPES_NAMED} more" if len(present) > _SCOPES_NAMED else ""
    return UnknownScope(f"scope {scope.name!r} is not in the bank: no question has it under {where}; the bank's "
                        f"scopes are {named}{rest}",
                        f"name one of them, or \"{EVERY_SCOPE}\" for every scope; nothing was run or recorded")


def require_in_bank(engine: "sa.Engine", scope: Scope) -> None:
    """Raise ``UnknownScope`` unless some question of the bank belongs to ``scope``, before anything is recorded.

    ``DatabaseUnavailable`` (or ``DatabaseRefused``) when the database cannot
    be asked. The whole bank always passes.
    """
    if scope.whole_bank:
        return
    import sqlalchemy as sa  # the database's side of scopes lives in db/, which imports this module
    from .db import queries
    from .db.engine import unavailable
    try:
        with engine.connect() as conn:
            queries.check_scope(conn, scope)
    except sa.exc.DBAPIError as exc:
        raise unavailable(engine, exc) from exc


def fans_out(scope_key: str, requested: str | None) -> bool:
    """Whether a request stands for every scope: ``*``, or no scope named while scopes are configured."""
    return bool(scope_key) and (not requested or requested == EVERY_SCOPE)


def child_request_id(parent: str, scope: str) -> str:
    """The request id of a fan-out's request for ``scope``: the same for every delivery of the parent."""
    derived = f"{parent}/{scope}"
    if len(derived) <= 200:
        return derived
    return "fan-out-" + hashlib.sha256(f"{parent}\x00{scope}".encode()).hexdigest()[:48]
