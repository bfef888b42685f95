"""Exceptions raised by the jwstrun library.

Every message says what went wrong *and* what to do next; the CLI prints it
as ``Error: <message>`` and exits non-zero without a traceback (unless
``--debug``).
"""

__all__ = [
    "JwstrunError",
    "InputError",
    "ConfigError",
    "CrdsError",
    "PipelineError",
    "OutputError",
]


class JwstrunError(Exception):
    """Base class for errors a user can act on."""

    exit_code = 1


class InputError(JwstrunError):
    """An input file, association or option is unusable (names the file)."""


class ConfigError(JwstrunError):
    """A profile or parameter setting is invalid (names the file and line)."""


class CrdsError(JwstrunError):
    """CRDS cannot resolve or provide reference files."""


class PipelineError(JwstrunError):
    """A jwst pipeline failed (names the pipeline, step and input)."""


class OutputError(JwstrunError):
    """The output directory cannot be written or is in use."""
