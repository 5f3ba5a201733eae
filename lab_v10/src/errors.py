"""Error types the lab raises for bad input.

Every message names the file (or source), the row, column or key, and what was expected, so a user can
fix the input without reading a traceback. The CLI catches :class:`LabError` and exits non-zero with the
message only.
"""


class LabError(Exception):
    """Base class of all user-facing input errors."""


class ConfigError(LabError, ValueError):
    """A config file or value is wrong: unknown key, wrong type or out-of-range value."""


class DataValidationError(LabError, ValueError):
    """Market data is missing, malformed or violates the bar schema."""
