"""The one error type for data files femb cannot read (RecordIO, .idx, property, .bin, pairs lists)."""

from __future__ import annotations


class DataFormatError(ValueError):
    """A data file that is malformed, truncated or inconsistent; the one-line message names the file
    (and the byte offset or line where that helps). A ``ValueError``, so callers that catch bad input
    as ``ValueError`` keep working."""
