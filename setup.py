"""The C part of kmcodec: method 3's range coder (kmcodec/_raster.c, spec §11.15) and
the labels-to-pixels loop of decode (kmcodec/_lookup.c).

Everything else is in pyproject.toml. Both extensions are optional: without a C
compiler the install still succeeds, kmcodec reads method-3 files with its
pure-Python decoder (kmcodec/raster_ref.py) and does not write them, and decode
looks labels up with numpy.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildExt(build_ext):
    """-O3 where the compiler takes GCC-style flags (MSVC optimises release builds already)."""

    def build_extensions(self) -> None:
        if self.compiler.compiler_type != "msvc":
            for extension in self.extensions:
                extension.extra_compile_args = ["-O3"]
        super().build_extensions()


setup(
    ext_modules=[
        Extension("kmcodec._raster", ["kmcodec/_raster.c"], optional=True),
        Extension("kmcodec._lookup", ["kmcodec/_lookup.c"], optional=True),
    ],
    cmdclass={"build_ext": BuildExt},
)
