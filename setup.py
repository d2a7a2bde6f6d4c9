"""Builds rerf's optional compiled code at install time: the decode loops (rerf_codec/codec/_native.c)
and the CPU renderer and training kernels (rerf_codec/field/_march.c).

Everything else is declared in setup.cfg. Both extensions are optional: when a compiler is
missing the build goes on without them and rerf uses its numpy decoder (rerf_codec/codec/native.py)
and its torch renderer and training path (rerf_codec/field/native_render.py, native_train.py).
"""

import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """A failed compile leaves rerf on its numpy path instead of failing the install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # pragma: no cover - no compiler
            print(f"rerf: compiled extensions not built ({exc}); the numpy/torch paths will be used")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # pragma: no cover - no compiler
            print(f"rerf: {ext.name} not built ({exc}); its numpy/torch fallback will be used")


# -ffp-contract=off: no fused multiply-add, so the C code rounds like the reference paths it mirrors.
FLAGS = ["-O3", "-std=c99", "-fno-strict-aliasing", "-ffp-contract=off"]
# The field kernels also vectorise loops with selects and sqrt (the residual's optimiser step):
# these two flags drop only floating-point traps and errno, never an IEEE result. -fno-wrapv undoes
# Python's -fwrapv (its CFLAGS come first), which kept GCC from simplifying the kernels' index
# arithmetic: the renderer's kernel ran 10 % slower with it; none of them relies on signed overflow.
FIELD_FLAGS = [*FLAGS, "-fno-trapping-math", "-fno-math-errno", "-fno-wrapv"]

setup(
    ext_modules=[
        Extension(
            "rerf_codec.codec._native",
            sources=["rerf_codec/codec/_native.c"],
            extra_compile_args=FLAGS,
            optional=True,
        ),
        Extension(
            "rerf_codec.field._march",
            sources=["rerf_codec/field/_march.c"],
            extra_compile_args=FIELD_FLAGS,
            extra_link_args=[] if sys.platform == "win32" else ["-pthread"],  # the deferred renderer's threads
            optional=True,
        ),
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
