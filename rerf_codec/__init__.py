"""rerf: a bit-exact free-viewpoint-video codec built on ReRF (CVPR 2023).

The library is importable without the CLI. The decoding path (``rerf_codec.bitstream``,
``rerf_codec.codec.decoder`` and what they import) never imports torch.
"""

import os

# Idle OpenMP threads (torch, BLAS) sleep instead of spinning. Measured: on a busy 2-core
# machine spinning threads made a training test 5x slower (102 s vs 19 s); on an idle one
# sleeping costs next to nothing. Set before any library loads libgomp; the user's setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from rerf_codec.errors import RerfError, RerfFormatError, RerfUsageError

__all__ = ["RerfError", "RerfFormatError", "RerfUsageError", "__version__"]
__version__ = "0.1.0"
