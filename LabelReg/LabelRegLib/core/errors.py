"""Errors raised for bad input: each names the file (or object) and the problem."""

from __future__ import annotations

from pathlib import Path


class LabelRegError(Exception):
    """Base class of every error LabelReg raises on purpose."""


class InputError(LabelRegError, ValueError):
    """Bad input data: ``source`` says which file or object, ``problem`` what is wrong."""

    def __init__(self, source: str | Path | None, problem: str):
        self.source = str(source) if source is not None else None
        self.problem = problem
        super().__init__(f"{self.source}: {problem}" if self.source else problem)

    def __reduce__(self):  # pickled with its two arguments (the registration worker sends errors back)
        return type(self), (self.source, self.problem)


class ModelFileError(LabelRegError, ValueError):
    """A model file that is missing, truncated, tampered with, or not a LabelReg model."""

    def __init__(self, path: str | Path, problem: str):
        self.source = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")

    def __reduce__(self):
        return type(self), (self.source, self.problem)


class DeviceError(LabelRegError, RuntimeError):
    """A compute device was requested that this machine does not have."""
