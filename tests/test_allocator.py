"""``import rerf_codec`` keeps freed memory for reuse (glibc): large tensors do not come from fresh mmaps."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

PROBE = """
import ctypes, sys
{imports}
import numpy as np

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
big = np.ones(64 << 20, np.uint8)  # 64 MiB: over glibc's largest mmap threshold (32 MiB)
print(libc.mallinfo2().hblkhd)
"""


def _mmapped_bytes(imports: str, env: dict[str, str]) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE.format(imports=imports)], capture_output=True, text=True,
                         check=True, env=env)  # fmt: skip
    return int(out.stdout.split()[-1])


def _glibc_with_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _glibc_with_mallinfo2(), reason="needs glibc ≥ 2.33")
def test_import_keeps_large_blocks_on_the_heap() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "RERF_SYSTEM_MALLOC"}
    assert _mmapped_bytes("", env) >= 64 << 20  # plain Python: the 64 MiB block is an mmap
    assert _mmapped_bytes("import rerf_codec", env) < 64 << 20  # rerf: from the heap, reused next time
    # The user's own malloc tuning (or RERF_SYSTEM_MALLOC=1) wins.
    assert _mmapped_bytes("import rerf_codec", {**env, "RERF_SYSTEM_MALLOC": "1"}) >= 64 << 20
