"""Aligned text tables for the command line, drawn by ``rich``.

One home for every table a command prints::

    from neuralcollapse._internal.tables import render_table

    text = render_table(
        ["metric", "value"],
        [["top1", "92.8"], ["nc1", "0.12"]],
        title="test set",
        align=["left", "right"],
    )
    print(text)

Cells are strings (format numbers before), columns are padded to their widest cell and
never wrap or truncate (the table may be wider than the terminal; a log file gets the same
text), and the output is plain text without colour codes, so it can be compared in tests
and piped to files.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Literal

__all__ = ["Align", "render_table"]

Align = Literal["left", "right", "center"]


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    title: str | None = None,
    align: Sequence[Align] | None = None,
    gap: int = 2,
) -> str:
    """The rows under their headers as aligned plain text (no trailing newline).

    Args:
        headers: one name per column.
        rows: one sequence of cells per row, as many as ``headers``; cells are shown
            with ``str()`` (None as an empty cell).
        title: a line above the table, left-aligned.
        align: per column; default: the first column left, the others right (labels,
            then numbers).
        gap: spaces between columns.

    Raises:
        ValueError: a row or ``align`` whose length differs from ``headers``.
    """
    from rich import box
    from rich.console import Console
    from rich.table import Table

    columns = len(headers)
    if align is None:
        align = ["left", *(["right"] * (columns - 1))]
    if len(align) != columns:
        raise ValueError(f"align has {len(align)} entries for {columns} columns")
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, gap // 2))
    for name, side in zip(headers, align, strict=True):
        table.add_column(str(name), justify=side, no_wrap=True)
    for number, row in enumerate(rows):
        if len(row) != columns:
            raise ValueError(f"row {number} has {len(row)} cells for {columns} columns")
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    buffer = io.StringIO()
    console = Console(
        file=buffer, width=10_000, color_system=None, force_terminal=False, highlight=False
    )
    console.print(table)
    lines = [line.rstrip() for line in buffer.getvalue().splitlines() if line.strip()]
    if title:
        lines.insert(0, title)
    return "\n".join(lines)
