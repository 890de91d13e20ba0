"""`HeadlineRow`: a comparison row with its printed cells and tone, shared by the view and
the panels (its own module so that neither has to import the other)."""

from __future__ import annotations

from dataclasses import dataclass

from harness import fmt
from harness.analysis.deltas import DeltaRow
from harness.fmt import Cells, Tone


@dataclass(frozen=True)
class HeadlineRow:
    """A `DeltaRow` (the very object of `Comparison.rows`) with its printed cells and tone."""

    row: DeltaRow
    cells: Cells
    tone: Tone

    @classmethod
    def of(cls, row: DeltaRow) -> "HeadlineRow":
        return cls(row, fmt.cells(row), fmt.tone(row))
