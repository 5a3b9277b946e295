"""Run reports: one self-contained HTML page of a run's curves, tables and class geometry.

::

    from neuralcollapse.report import write_report
    path = write_report(["runs/digits_lt-20260101-120000"])   # RUN_DIR/report.html

or ``neuralcollapse report RUN_DIR [RUN_DIR ...] [--out report.html] [--format svg]``.
The plot functions are usable on their own; each returns a :class:`matplotlib.figure.Figure`.
"""

from neuralcollapse.report.plots import (
    cosine_matrix,
    plot_accuracy,
    plot_collapse,
    plot_hierarchy,
    plot_loss,
    plot_per_class_accuracy,
    plot_similarity,
)
from neuralcollapse.report.runs import RunData, read_run
from neuralcollapse.report.writer import IMAGE_FORMATS, write_report

__all__ = [
    "IMAGE_FORMATS",
    "RunData",
    "cosine_matrix",
    "plot_accuracy",
    "plot_collapse",
    "plot_hierarchy",
    "plot_loss",
    "plot_per_class_accuracy",
    "plot_similarity",
    "read_run",
    "write_report",
]
