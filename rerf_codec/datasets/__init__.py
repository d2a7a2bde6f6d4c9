"""Multi-view datasets (DESIGN.md decision 7): the native format and its tools.

The native layout, camera/pixel conventions and the validating loader live in
``rerf_codec.datasets.format``; importers and renderers in sibling modules build on it.
"""

# The public dataset API is format.py's; its ``__all__`` is the package's.
from rerf_codec.datasets.format import *  # noqa: F403
from rerf_codec.datasets.format import __all__  # noqa: F401
