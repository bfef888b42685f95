"""Check that a JWST product is what it claims to be (being split into modules)."""

from .checks import *  # noqa: F403
from .checks import DQ_OUTLIER, __all__, _parse_asdf_bytes  # noqa: F401
