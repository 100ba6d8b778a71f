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


def path_problem(path: object) -> str | None:
    """Why `path` cannot be read as a file, in words to follow its name in a message: "not found", "is a
    folder, not a file", "is a character device, not a file", ...; None for a regular file (or a link to one)."""
    import os
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "not found"
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    if stat.S_ISREG(mode):
        return None
    kinds = {stat.S_ISDIR: "a folder", stat.S_ISFIFO: "a named pipe", stat.S_ISCHR: "a character device",
             stat.S_ISBLK: "a block device", stat.S_ISSOCK: "a socket"}
    kind = next((name for test, name in kinds.items() if test(mode)), "not a regular file")
    return f"is {kind}, not a file"
