"""wgpy packages as a Python project should: the standard build frontend makes an sdist and a
wheel (the wheel from the sdist, so the sdist holds all the package needs), and `pip install .`,
not editable and without extras, into a fresh virtual environment gives working `wgpy` and
`wgpy-quick`, with the man pages, units and completions of `wgpy install-files`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from wgpy import __version__, system_files
from wgpy.io import accel

REPO = Path(__file__).resolve().parents[2]
# What a checkout holds beside its sources: never part of a build.
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", ".tox", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
    ".hypothesis", "*.pcap", "*.pcapng",
)  # fmt: skip
PACKAGE_DATA = [f"wgpy/data/{file.source}" for file in system_files.FILES]
TIMEOUT = 600


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the checkout's sources, so that building leaves the checkout untouched."""
    copy = tmp_path_factory.mktemp("source") / "wgpy"
    shutil.copytree(REPO, copy, ignore=NOT_SOURCES)
    return copy


def run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run([str(part) for part in cmd], cwd=cwd, capture_output=True,
                            text=True, timeout=TIMEOUT, env=env)  # fmt: skip
    assert result.returncode == 0, f"{cmd}: {result.stderr}{result.stdout}"
    return result.stdout


def wheel_tag() -> str:
    if not accel.available:
        return "py3-none-any"
    version = f"cp{sys.version_info.major}{sys.version_info.minor}"
    return f"{version}-{version}-{sysconfig.get_platform().replace('-', '_')}"


def test_python_m_build_makes_an_sdist_with_all_the_package_needs_and_a_wheel_from_it(
    source: Path, tmp_path: Path
) -> None:
    run(sys.executable, "-m", "build", "--outdir", tmp_path, source, cwd=tmp_path)
    (sdist,) = tmp_path.glob("wgpy-*.tar.gz")
    (wheel,) = tmp_path.glob("wgpy-*.whl")
    assert sdist.name == f"wgpy-{__version__}.tar.gz"
    # With a C compiler and OpenSSL's headers (install-deps puts them here) the accelerator is
    # built, and the wheel is for this platform's CPython.
    assert wheel.name == f"wgpy-{__version__}-{wheel_tag()}.whl"
    with tarfile.open(sdist) as archive:
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
    for needed in [*PACKAGE_DATA, "wgpy/cli/wgpy.py", "wgpy/core/noise.py"]:
        assert needed in in_wheel
        assert needed in in_sdist
    assert {"README.md", "pyproject.toml"} <= in_sdist


def test_pip_install_into_a_fresh_venv_gives_working_commands(source: Path, tmp_path: Path) -> None:
    venv, home = tmp_path / "venv", tmp_path / "home"
    home.mkdir()
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    pip_env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    run(venv / "bin/pip", "install", "--quiet", ".", cwd=source, env=pip_env)
    bindir = venv / "bin"
    # Nothing of the checkout nor of its .venv on the way: the commands by path, from elsewhere.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home)}

    def wgpy(*args: str, input: str | None = None) -> str:
        result = subprocess.run([bindir / "wgpy", *args], cwd=home, env=env, input=input,
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert wgpy("--version").startswith(f"wgpy {__version__}, data path ")
    located = run(bindir / "python", "-c", "import wgpy; print(wgpy.__file__)", cwd=home, env=env)
    assert located.startswith(str(venv))
    quick = subprocess.run([bindir / "wgpy-quick", "--help"], cwd=home, env=env,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert quick.returncode == 0
    assert quick.stderr.startswith("Usage: wgpy-quick [ up | down | save | strip ]")
    private = wgpy("genkey")
    assert len(wgpy("pubkey", input=private).strip()) == 44
    assert wgpy("demo", "--simulated").rstrip().endswith("dropped 0")
    wgpy("install-files", "--destdir", str(tmp_path / "staged"))
    unit = tmp_path / "staged/usr/local/lib/systemd/system/wgpy-quick@.service"
    assert f"ExecStart={bindir}/wgpy-quick up %i" in unit.read_text().splitlines()
