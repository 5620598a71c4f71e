"""The two optional compiled parts, each with its pure-Python reference as the fallback:

- the accelerator (wgpy/io/_accel.c, see wgpy/io/accel.py), built when a C compiler, Python's
  headers and OpenSSL's are present. Where libsodium's headers are present too, it also seals
  and opens lone packets over libsodium (WGPY_SODIUM); without them it is built without that.
- the user-space stack's modules compiled by mypyc (see wgpy/compiled.py), where mypy
  (a build requirement in pyproject.toml) and the same compiler are; WGPY_MYPYC=0 builds
  without them.

Where either cannot be built, the build goes on without it (`optional`), and wgpy runs that
part from its sources. Everything else is in pyproject.toml."""

import os
import sys
import tempfile
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CompileError, LinkError

PROBE = """#include <sodium.h>
int main(void) {
    unsigned char key[32] = {0}, nonce[12] = {0}, text[1] = {0}, tag[16];
    return sodium_init() < 0 ||
           crypto_aead_chacha20poly1305_ietf_encrypt_detached(text, tag, NULL, text, 1, NULL, 0,
                                                              NULL, nonce, key);
}
"""


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wgpy import compiled  # noqa: E402  (this checkout's: what to compile, the group's name)

ACCELERATOR = "wgpy.io._accel"


class BuildExt(build_ext):
    """build_ext on every core, with libsodium linked into the accelerator where a program using
    it compiles and links."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if self.parallel is None:  # mypyc's C takes most of the build
            self.parallel = os.cpu_count() or 1

    def build_extensions(self) -> None:
        if self._links_sodium():
            for extension in self.extensions:
                if extension.name == ACCELERATOR:
                    extension.define_macros.append(("WGPY_SODIUM", "1"))
                    extension.libraries.append("sodium")
        super().build_extensions()

    def _links_sodium(self) -> bool:
        with tempfile.TemporaryDirectory() as directory:
            source = os.path.join(directory, "probe.c")
            with open(source, "w") as file:
                file.write(PROBE)
            try:
                objects = self.compiler.compile([source], output_dir=directory)
                self.compiler.link_executable(
                    objects, "probe", output_dir=directory, libraries=["sodium"]
                )
            except (CompileError, LinkError):
                print("libsodium not found: the accelerator is built without it")
                return False
        return True


def stack_extensions() -> list[Extension]:
    """The stack's modules compiled by mypyc as one group; none where mypy is missing or
    refuses them, or with WGPY_MYPYC=0."""
    if os.environ.get("WGPY_MYPYC") == "0":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("mypyc not found: the stack runs from its sources")
        return []
    paths = [str(source.relative_to(Path.cwd())) for source in compiled.sources()]
    try:
        extensions = mypycify(paths, opt_level="3", group_name=compiled.group())
    except SystemExit:  # mypy's errors, printed
        print("mypyc failed: the stack runs from its sources")
        return []
    for extension in extensions:
        extension.optional = True
    return extensions


setup(
    cmdclass={"build_ext": BuildExt},
    ext_modules=[
        *stack_extensions(),
        Extension(
            ACCELERATOR,
            ["wgpy/io/_accel.c"],
            libraries=["crypto"],
            extra_compile_args=["-O3", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        ),
    ],
)
