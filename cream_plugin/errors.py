"""Errors that name what was wrong and where, so users can fix their input."""

from __future__ import annotations


class CreamError(Exception):
    """Base class for errors with a user-facing message."""


class ConfigError(CreamError, ValueError):
    """The run configuration has an unknown key, a wrong type or an out-of-range value."""


class DataError(CreamError, ValueError):
    """A data file is missing or has a malformed row; the message names the file and line."""


class ModelLoadError(CreamError, RuntimeError):
    """A model could not be found or loaded; the message says how to fix it."""


class RewarderError(CreamError, RuntimeError):
    """A rewarder's ``score`` failed or returned something unusable; names the plugin."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's preemption, ``kill``): unwinds like Ctrl-C, so every clean-up that
    Ctrl-C runs (the temporary files, the run folder's lock) runs too."""


_OS_FIXES = {
    "ENOSPC": "the disk is full; free space and rerun (a run resumes where it stopped)",
    "EDQUOT": "the disk quota is used up; free space and rerun (a run resumes where it stopped)",
    "EFBIG": "the file is larger than this shell allows (ulimit -f); raise the limit and rerun",
    "EACCES": "permission denied; choose a path you may write, or fix its permissions",
    "EPERM": "operation not permitted; choose a path you may write, or fix its permissions",
    "EROFS": "the file system is read-only; choose a writable --output",
    "ENOENT": "no such file or folder; check the path",
    "ENOTDIR": "a part of the path is a file, not a folder; check the path",
    "EISDIR": "it is a folder where a file was expected; check the path",
    "ENAMETOOLONG": "the path is too long for this file system; choose a shorter one",
    "ELOOP": "the path has a symbolic link loop; check the links on it",
    "EMFILE": "too many open files; raise `ulimit -n` and rerun",
    "EIO": "an input/output error from the disk; check the device and rerun",
}


def describe_os_error(exc: OSError) -> str:
    """An operating-system error as one line naming the path(s) and what to do about it."""
    import errno
    import os

    code = errno.errorcode.get(exc.errno or -1, "")
    reason = exc.strerror or str(exc) or type(exc).__name__
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    where = " -> ".join(paths) or "a file or folder (the system named none)"
    fix = _OS_FIXES.get(code, f"{os.strerror(exc.errno) if exc.errno else 'check the path'}")
    return f"{where}: {reason} [{code or type(exc).__name__}]; {fix}"
