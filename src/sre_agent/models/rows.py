"""Slots of per-series state rows in one float64 matrix (shared by the vectorised banks)."""

from __future__ import annotations

from array import array

import numpy as np

__all__ = ["RowBank"]


class RowBank:
    """A growable matrix of ``width`` float64 columns, one row per series slot."""

    width = 0  #: columns per row (set by the subclass)

    def __init__(self, capacity: int = 1024) -> None:
        self.S = np.zeros((capacity, self.width))
        #: free slots, last out first: an ``array`` (8 B a slot), not a list of int
        #: objects (36 B a slot: half the slots are free right after a doubling)
        self._free = array("q", range(capacity - 1, -1, -1))

    def __len__(self) -> int:
        return self.S.shape[0] - len(self._free)

    def add(self, row: np.ndarray | None = None) -> int:
        """Allocate a slot (fresh, or from a saved row); return its index."""
        if not self._free:
            old = self.S.shape[0]
            # zeros then copy, not vstack: a large np.zeros is mapped lazily, so the
            # unused half of the doubled matrix costs no resident memory until used
            grown = np.zeros((2 * old, self.width))
            grown[:old] = self.S
            self.S = grown
            self._free = array("q", range(2 * old - 1, old - 1, -1))
        slot = self._free.pop()
        self.S[slot] = 0.0 if row is None else row
        return slot

    def remove(self, slot: int) -> None:
        self.S[slot] = 0.0
        self._free.append(slot)

    def row(self, slot: int) -> np.ndarray:
        return self.S[slot]

    @staticmethod
    def row_bytes(row: np.ndarray) -> bytes:
        return np.ascontiguousarray(row, dtype="<f8").tobytes()

    @classmethod
    def row_from_bytes(cls, data: bytes) -> np.ndarray:
        if len(data) != cls.width * 8:
            raise ValueError(f"state has {len(data)} bytes, expected {cls.width * 8}")
        return np.frombuffer(data, dtype="<f8").astype(np.float64)
