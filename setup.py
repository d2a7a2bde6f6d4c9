"""Builds rerf's optional compiled decode loops (rerf_codec/codec/_native.c) at install time.

Everything else is declared in setup.cfg. The extension is optional: when a compiler is
missing the build goes on without it and rerf uses its numpy path (rerf_codec/codec/native.py).
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """A failed compile leaves rerf on its numpy path instead of failing the install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # pragma: no cover - no compiler
            print(f"rerf: compiled decoder not built ({exc}); the numpy path will be used")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # pragma: no cover - no compiler
            print(f"rerf: compiled decoder not built ({exc}); the numpy path will be used")


setup(
    ext_modules=[
        Extension(
            "rerf_codec.codec._native",
            sources=["rerf_codec/codec/_native.c"],
            extra_compile_args=["-O3", "-std=c99", "-fno-strict-aliasing", "-ffp-contract=off"],
            optional=True,
        )
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
