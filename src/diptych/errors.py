"""The one exception type that means "the user gave bad input".

The CLI turns a :class:`DiptychError` into a single line on stderr and exit code 2,
with no traceback. Anything else that escapes is a bug and keeps its traceback.
"""


class DiptychError(Exception):
    """Bad input, missing data or a failed run, explained in one line (problem and fix)."""


class DataError(DiptychError):
    """A dataset file is missing, corrupt, truncated or fails its checksum."""


class NonFiniteLossError(DiptychError):
    """Training produced a NaN or infinite loss."""
