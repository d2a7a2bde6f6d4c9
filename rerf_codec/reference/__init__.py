"""``rerf-reference``: the ReRF paper's JPEG-style grid codec, re-implemented as a baseline.

Used by ``rerf bench-rate-distortion`` to measure rerf against the published method
(see :mod:`rerf_codec.reference.codec` for the design and the choices made).
"""

from rerf_codec.reference.codec import (
    REFERENCE_GOF,
    ReferenceConfig,
    ReferenceReport,
    decode_reference,
    encode_reference,
    quality_steps,
    quant_table,
)

__all__ = [
    "REFERENCE_GOF",
    "ReferenceConfig",
    "ReferenceReport",
    "decode_reference",
    "encode_reference",
    "quality_steps",
    "quant_table",
]
