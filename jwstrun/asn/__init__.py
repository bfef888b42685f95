"""JWST associations (moved into a package; split into modules next)."""

from .build import *  # noqa: F401,F403
from .build import __all__  # noqa: F401
