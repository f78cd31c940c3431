"""Rendering reports: charts, row files and annotated images from the store's report queries.

The store (``inspect_core.store``) owns every query; this package only turns their DataFrames into
files people open. Time bounds typed by people (``--since 7d``) are parsed here too.
"""

from inspect_core.reporting.annotate import AnnotationResult, annotate_top
from inspect_core.reporting.plots import PLOT_NAMES, plot_report
from inspect_core.reporting.tables import TABLE_FORMATS, write_table
from inspect_core.reporting.times import parse_when

__all__ = ["PLOT_NAMES", "TABLE_FORMATS", "AnnotationResult", "annotate_top", "parse_when", "plot_report", "write_table"]
