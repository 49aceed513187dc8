"""Exceptions that facekp raises for bad input, with messages that state the fix."""

from __future__ import annotations


class FacekpError(Exception):
    """Base class: the command line prints these as one line, without a traceback."""


class DataFormatError(FacekpError, ValueError):
    """A data file that cannot be used, naming the file and, where known, the row and column."""

    def __init__(
        self,
        message: str,
        path: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.path = path
        self.row = row
        self.column = column
        where = [part for part in (
            str(path) if path is not None else None,
            f"row {row}" if row is not None else None,
            f"column {column!r}" if column is not None else None,
        ) if part]
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class CheckpointError(FacekpError):
    """A checkpoint that is missing, corrupt, truncated or made for another model."""


class ImageError(FacekpError):
    """An image file that cannot be decoded or cannot hold a face."""
