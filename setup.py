"""The optional accelerator (wgpy/io/_accel.c, see wgpy/io/accel.py): built when a C compiler,
Python's headers and OpenSSL's are present; without them the build goes on without it
(`optional`), and wgpy runs on its pure-Python path. Where libsodium's headers are present too,
it also seals and opens lone packets over libsodium (WGPY_SODIUM); without them it is built
without that. Everything else is in pyproject.toml."""

import os
import tempfile

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


class BuildExt(build_ext):
    """build_ext, with libsodium linked in where a program using it compiles and links."""

    def build_extensions(self) -> None:
        if self._links_sodium():
            for extension in self.extensions:
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


setup(
    cmdclass={"build_ext": BuildExt},
    ext_modules=[
        Extension(
            "wgpy.io._accel",
            ["wgpy/io/_accel.c"],
            libraries=["crypto"],
            extra_compile_args=["-O3", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ],
)
