"""rerf: a bit-exact free-viewpoint-video codec built on ReRF (CVPR 2023).

The library is importable without the CLI. The decoding path (``rerf_codec.bitstream``,
``rerf_codec.codec.decoder`` and what they import) never imports torch.
"""

from rerf_codec.errors import RerfError, RerfFormatError, RerfUsageError

__all__ = ["RerfError", "RerfFormatError", "RerfUsageError", "__version__"]
__version__ = "0.1.0"
