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
