"""The runner, moved into a package (split into modules in the next commit)."""

from .task import *  # noqa: F401,F403
from .task import __all__  # noqa: F401
