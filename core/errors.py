"""Exceptions whose messages are shown to the user as one line.

The CLI maps every `BadRecError` to `error: <message>` on stderr and exit 2;
pages show the same message with `st.error`.
"""


class BadRecError(Exception):
    """Base class for user-facing errors (bad input, missing data, ...)."""


class InputError(BadRecError):
    """A file, flag or value the user gave cannot be used."""


class DatasetNotFound(BadRecError):
    """No source for a dataset could be found or reached."""


class StoreError(BadRecError):
    """The DuckDB database could not be opened or written."""


class ResourceError(BadRecError):
    """A configuration would not fit in this machine's memory."""


class EndpointError(BadRecError):
    """An OpenAI-compatible endpoint was unreachable or misbehaved."""
