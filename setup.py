"""The optional accelerator (wgpy/io/_accel.c, see wgpy/io/accel.py): built when a C compiler,
Python's headers and OpenSSL's are present; without them the build goes on without it
(`optional`), and wgpy runs on its pure-Python path. Everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "wgpy.io._accel",
            ["wgpy/io/_accel.c"],
            libraries=["crypto"],
            extra_compile_args=["-O3", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
