"""jwstrun: run the JWST imaging pipelines (calwebb_image2 / calwebb_image3) at scale.

The package never imports jwst, crds or astropy at import time so that
``jwstrun --help`` stays fast; the heavy modules are imported inside the
functions that need them.
"""

from ._version import __version__

__all__ = ["__version__"]
