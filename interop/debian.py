"""Debian packages, through apt and dpkg: versions, downloads into a cache, files inside a .deb."""

from __future__ import annotations

import re
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

from interop.errors import ImageError


def depends_on(metapackage: str, prefix: str) -> str:
    """The package `metapackage` depends on whose name starts with `prefix`."""
    output = _apt_cache("depends", metapackage)
    match = re.search(rf"Depends: ({re.escape(prefix)}\S*)", output)
    if match is None:
        raise ImageError(f"{metapackage} depends on no {prefix}* package:\n{output}")
    return match.group(1)


def candidate_version(package: str) -> str:
    """The version `apt-get install` would take."""
    match = re.search(r"^Version: (\S+)", _apt_cache("show", "--no-all-versions", package), re.M)
    if match is None:
        raise ImageError(f"apt knows no version of {package}")
    return match.group(1)


def installed_version(package: str) -> str:
    version = command("dpkg-query", "--showformat=${Version}", "--show", package)
    if not version:
        raise ImageError(f"{package} is not installed (see interop/README.md)")
    return version


def download(package: str, version: str, debs: Path) -> Path:
    """The package's .deb from `debs`, fetched with `apt-get download` if it is not there."""
    debs.mkdir(parents=True, exist_ok=True)
    # The file name apt gives a .deb: the epoch's colon is escaped.
    deb = debs / f"{package}_{version.replace(':', '%3a')}_amd64.deb"
    if not deb.exists():
        # As root, apt drops to the _apt user unless told otherwise; the cache may be root's own.
        command(
            "apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", f"{package}={version}",
            cwd=debs,
        )  # fmt: skip
    if not deb.exists():
        raise ImageError(f"apt-get download {package}={version} left no {deb.name}")
    return deb


def files(deb: Path) -> Iterator[tuple[str, bytes]]:
    """(path, contents) of each regular file in a .deb, streamed through dpkg-deb."""
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as p:
        assert p.stdout is not None
        with tarfile.open(fileobj=p.stdout, mode="r|") as archive:
            for member in archive:
                extracted = archive.extractfile(member) if member.isfile() else None
                if extracted is not None:
                    yield member.name.removeprefix("."), extracted.read()
    if p.returncode != 0:
        raise ImageError(f"dpkg-deb could not read {deb}")


def file(deb: Path, path: str) -> bytes:
    for name, contents in files(deb):
        if name == path:
            return contents
    raise ImageError(f"{deb.name} has no {path}")


def command(*cmd: str, cwd: Path | None = None) -> str:
    """The output of `cmd`, or ImageError with what it printed."""
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, check=False)
    if result.returncode != 0:
        raise ImageError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def _apt_cache(*args: str) -> str:
    try:
        return command("apt-cache", *args)
    except ImageError as error:
        raise ImageError(f"{error} (has 'apt-get update' run on this machine?)") from None
