"""The files a system installation of wgpy wants beside its two commands: systemd units, man
pages and bash completions, shipped as package data (wgpy/data).

`install` writes them where systemd, man and bash-completion look under a prefix (/usr/local by
default), with the units' `@BINDIR@` made the directory holding this installation's `wgpy` and
`wgpy-quick`: a unit must name its command by absolute path, and pip puts the commands wherever
the environment is (a virtual environment's bin, /usr/local/bin, ~/.local/bin).
"""

from __future__ import annotations

import shutil
import sysconfig
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import NamedTuple

from wgpy.errors import WgpyError

DEFAULT_PREFIX = Path("/usr/local")
COMMANDS = ("wgpy", "wgpy-quick")
BINDIR_PLACEHOLDER = "@BINDIR@"


class SystemFile(NamedTuple):
    source: str  # under wgpy/data
    target: str  # under the prefix


FILES = (
    SystemFile("systemd/wgpy-quick@.service", "lib/systemd/system/wgpy-quick@.service"),
    SystemFile("systemd/wgpy-quick.target", "lib/systemd/system/wgpy-quick.target"),
    SystemFile("systemd/wgpy@.service", "lib/systemd/system/wgpy@.service"),
    SystemFile("man/wgpy.8", "share/man/man8/wgpy.8"),
    SystemFile("man/wgpy-quick.8", "share/man/man8/wgpy-quick.8"),
    SystemFile("bash-completion/wgpy", "share/bash-completion/completions/wgpy"),
    SystemFile("bash-completion/wgpy-quick", "share/bash-completion/completions/wgpy-quick"),
)


def data(source: str) -> Traversable:
    """A file of wgpy/data, wherever the package is installed."""
    return resources.files("wgpy").joinpath("data", *source.split("/"))


def commands_directory() -> Path:
    """The directory holding this installation's `wgpy` and `wgpy-quick`."""
    scripts = Path(sysconfig.get_path("scripts"))
    if all((scripts / command).is_file() for command in COMMANDS):
        return scripts
    found = shutil.which(COMMANDS[1])
    if found is None:
        raise WgpyError(f"{', '.join(COMMANDS)}: not found in {scripts} nor on PATH")
    return Path(found).resolve().parent


def rendered(file: SystemFile, bindir: Path) -> str:
    return data(file.source).read_text().replace(BINDIR_PLACEHOLDER, str(bindir))


def install(prefix: Path, bindir: Path, destdir: Path | None = None) -> list[Path]:
    """Write FILES under `prefix` (below `destdir`, a staging root, if given); their paths."""
    written = []
    for file in FILES:
        path = _target(file, prefix, destdir)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered(file, bindir))
        path.chmod(0o644)
        written.append(path)
    return written


def uninstall(prefix: Path, destdir: Path | None = None) -> list[Path]:
    """Remove what `install` wrote; the paths that were there."""
    removed = []
    for file in FILES:
        path = _target(file, prefix, destdir)
        if path.exists():
            path.unlink()
            removed.append(path)
    return removed


def _target(file: SystemFile, prefix: Path, destdir: Path | None) -> Path:
    path = prefix / file.target
    return destdir / path.relative_to(path.anchor) if destdir else path
