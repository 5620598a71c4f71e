"""`pip install .` builds the accelerator and the compiled stack where a C compiler and the
headers are present, and without them goes on without them: wgpy is installed, on its pure
paths, saying so. Without libsodium's headers alone, the accelerator is built without its
lone-packet functions."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from wgpy import compiled

ROOT = Path(__file__).resolve().parents[2]


def wheel(tmp_path: Path, **env: str) -> Path:
    """A wheel of the repository's tracked files, built by pip as `pip install .` builds it
    (from a copy, so that the build's products stay out of the work tree)."""
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    source = tmp_path / "source"
    for name in files:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"]
    command += ["--disable-pip-version-check", "-w", str(tmp_path), "."]
    subprocess.run(command, cwd=source, env={**os.environ, **env}, check=True)
    (built,) = tmp_path.glob("wgpy-*.whl")
    return built


def installed_path(tmp_path: Path, built: Path) -> str:
    """What `wgpy --version` says of the data path, with `built` installed."""
    target = tmp_path / "installed"
    with zipfile.ZipFile(built) as archive:
        archive.extractall(target)
    # Without `site` (-S) and away from the work tree, its editable install is off the path: the
    # wheel's files are on it, then the environment's packages (cryptography).
    path = os.pathsep.join((str(target), sysconfig.get_paths()["purelib"]))
    env = {**os.environ, "PYTHONPATH": path}
    env.pop("WGPY_PURE", None)
    code = "import sys; from wgpy.cli.wgpy import main; sys.exit(main(['--version']))"
    return subprocess.run(
        [sys.executable, "-S", "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def extensions(built: Path) -> list[str]:
    with zipfile.ZipFile(built) as archive:
        return sorted(name for name in archive.namelist() if name.endswith(".so"))


SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")
ACCELERATOR = f"wgpy/io/_accel{SUFFIX}"


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc (scripts/install-deps)")
def test_with_a_compiler_the_accelerator_and_the_stack_are_built_and_used(tmp_path: Path) -> None:
    built = wheel(tmp_path)
    stack = [f"wgpy/netstack/{source.stem}{SUFFIX}" for source in compiled.sources()]
    library = f"wgpy/netstack/{compiled.library()}"
    assert extensions(built) == sorted([ACCELERATOR, *stack, library])
    described = installed_path(tmp_path, built)
    assert "data path accelerated (OpenSSL" in described
    assert "user-space stack compiled (mypyc)" in described
    # scripts/install-deps installs libsodium-dev: lone packets then go over libsodium.
    assert ("; libsodium " in described) == Path("/usr/include/sodium.h").exists()


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc (scripts/install-deps)")
def test_without_libsodium_s_headers_the_accelerator_is_built_without_it(tmp_path: Path) -> None:
    """A sodium.h that fails to compile stands for headers that are not there."""
    headers = tmp_path / "headers"
    headers.mkdir()
    (headers / "sodium.h").write_text("#error no libsodium here\n")
    built = wheel(tmp_path, CFLAGS=f"-I{headers}", WGPY_MYPYC="0")  # the accelerator alone
    assert extensions(built) == [ACCELERATOR]
    described = installed_path(tmp_path, built)
    assert "data path accelerated (OpenSSL" in described
    assert "libsodium" not in described


def test_without_a_compiler_wgpy_installs_on_the_pure_path(tmp_path: Path) -> None:
    built = wheel(tmp_path, CC="false")
    assert extensions(built) == []
    described = installed_path(tmp_path, built)
    assert "data path pure Python (accelerator not built" in described
    assert "user-space stack pure Python (not compiled)" in described
