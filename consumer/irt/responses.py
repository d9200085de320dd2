"""The sparse response list: who answered which item, and whether correctly.

Students answer a few dozen of thousands of items, so responses are kept as a
list grouped by student (compressed sparse rows), never as a dense
students x items matrix. Missing means "not presented", not "wrong".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Responses:
    """Dichotomous responses grouped by person.

    ``person_ptr[i]:person_ptr[i + 1]`` slices the ``item`` and ``correct``
    arrays to person ``i``'s answers.
    """

    person_ptr: np.ndarray  # int64, n_persons + 1
    item: np.ndarray  # int32, n_obs
    correct: np.ndarray  # uint8 (0/1), n_obs
    n_items: int

    def __post_init__(self) -> None:
        if self.person_ptr.ndim != 1 or self.person_ptr.size < 1 or self.person_ptr[0] != 0:
            raise ValueError("person_ptr must be a 1-d offsets array starting at 0")
        if self.person_ptr[-1] != self.item.size or self.item.size != self.correct.size:
            raise ValueError("person_ptr, item and correct disagree on the number of responses")
        if self.item.size and (self.item.min() < 0 or self.item.max() >= self.n_items):
            raise ValueError("item indices must lie in [0, n_items)")

    @property
    def n_persons(self) -> int:
        return self.person_ptr.size - 1

    @property
    def n_obs(self) -> int:
        return int(self.item.size)

    @classmethod
    def from_triplets(
        cls,
        person: np.ndarray,
        item: np.ndarray,
        correct: np.ndarray,
        n_persons: int | None = None,
        n_items: int | None = None,
    ) -> "Responses":
        """Group ``(person, item, correct)`` triplets by person.

        Each (person, item) pair must appear at most once: the caller decides
        which of several attempts counts.
        """
        person = np.asarray(person, dtype=np.int64)
        item = np.asarray(item)
        correct = np.asarray(correct)
        if not (person.shape == item.shape == correct.shape) or person.ndim != 1:
            raise ValueError("person, item and correct must be 1-d arrays of one length")
        if correct.size and not np.isin(np.unique(correct), (0, 1)).all():
            raise ValueError("correct must hold only 0 and 1")
        n_persons = int(person.max()) + 1 if n_persons is None and person.size else (n_persons or 0)
        n_items = int(item.max()) + 1 if n_items is None and item.size else (n_items or 0)
        order = np.argsort(person, kind="stable")
        counts = np.bincount(person, minlength=n_persons)
        ptr = np.zeros(n_persons + 1, dtype=np.int64)
        np.cumsum(counts, out=ptr[1:])
        return cls(
            person_ptr=ptr,
            item=item[order].astype(np.int32),
            correct=correct[order].astype(np.uint8),
            n_items=n_items,
        )

    def person_index(self) -> np.ndarray:
        """The person of each response (the expanded row index)."""
        return np.repeat(np.arange(self.n_persons, dtype=np.int32), np.diff(self.person_ptr))

    def restrict_items(self, keep: np.ndarray) -> tuple["Responses", np.ndarray]:
        """Drop the responses to items where ``keep`` is False.

        Returns the reduced responses (items renumbered 0..k-1, persons kept,
        possibly with no answers left) and the original index of each kept item.
        """
        keep = np.asarray(keep, dtype=bool)
        kept_items = np.flatnonzero(keep)
        if kept_items.size == self.n_items:
            return self, kept_items
        new_index = np.full(self.n_items, -1, dtype=np.int32)
        new_index[kept_items] = np.arange(kept_items.size, dtype=np.int32)
        mask = keep[self.item]
        per_person = np.bincount(self.person_index()[mask], minlength=self.n_persons)
        ptr = np.zeros_like(self.person_ptr)
        np.cumsum(per_person, out=ptr[1:])
        return (
            Responses(ptr, new_index[self.item[mask]], self.correct[mask], int(kept_items.size)),
            kept_items,
        )
