"""Errors users see: each names the file (or setting) and the problem, never a deep traceback."""

from __future__ import annotations


class InputError(ValueError):
    """A file the user handed us that cannot be used (missing, corrupt, wrong type, no face...)."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")
