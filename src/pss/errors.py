"""User-facing errors: raised for bad input, printed by the CLI as one line without a traceback."""


class PssError(Exception):
    """A problem with the user's input or set-up. The message names the problem and the fix."""


class ConfigError(PssError, ValueError):
    """An impossible or unknown setting (schedule values, model names, recipe keys)."""


class DataError(PssError):
    """Missing, empty or unreadable data."""


class CheckpointError(PssError):
    """A checkpoint that is missing, corrupt, or does not fit the model."""


class OutputError(PssError):
    """An output path that cannot be written: not a folder, read-only, full, or held by another run."""
