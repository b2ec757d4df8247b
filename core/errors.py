"""Error types. A :class:`UserInputError` is shown by the CLI as one line with exit code 2."""

from __future__ import annotations


class PolydiffError(Exception):
    """Base class of polydiff's own errors."""


class UserInputError(PolydiffError, ValueError):
    """Bad input from the user (a file, a field, an option): the message names it and what was expected."""


class ConfigError(UserInputError):
    """An invalid configuration key or value."""


class DataError(UserInputError):
    """A data file that is missing, unreadable or malformed (the message names the file)."""


class CheckpointError(UserInputError):
    """A missing or corrupt checkpoint (the message names the file)."""


class NonFiniteLossError(PolydiffError, RuntimeError):
    """Training stopped after ``train.max_bad_steps`` consecutive steps with a NaN/Inf loss or gradient norm."""


class MissingExtraError(UserInputError):
    """An optional dependency is not installed; the message gives the pip command that installs it."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"{package} is not installed; install it with: pip install 'polydiff[{extra}]'")
        self.package = package
        self.extra = extra


__all__ = ["CheckpointError", "ConfigError", "DataError", "MissingExtraError", "NonFiniteLossError", "PolydiffError", "UserInputError"]
