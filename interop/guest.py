"""The kernel peer's guest image, built from Debian packages and cached outside the repository.

The image is Debian's kernel (the package `linux-image-amd64` points at), an initramfs with the
modules WireGuard and virtio-net need, busybox-static, and `wg` and iperf3 with the libraries they
link. The kernel and busybox come from `apt-get download`; `wg` and iperf3 are the host's (Debian's
wireguard-tools and iperf3, which the rest of the test suite drives too). Nothing binary is in git:
the .deb files and the built image live in the cache directory, one image per kernel package
version and the versions of the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from interop import debian, kmod
from interop.cpio import CpioWriter
from interop.errors import ImageError

KERNEL_METAPACKAGE = "linux-image-amd64"
BUSYBOX_PACKAGE = "busybox-static"
# The host's programs copied into the guest, with the Debian package each comes from.
HOST_PROGRAMS = {"/usr/bin/wg": "wireguard-tools", "/usr/bin/iperf3": "iperf3"}
# The modules the guest loads; the modules they depend on are found in their .modinfo. The three
# x86_64 crypto modules are not dependencies of wireguard.ko but make it use SIMD code.
ROOT_MODULES = (
    "virtio_pci",
    "virtio_net",
    "chacha-x86_64",
    "poly1305-x86_64",
    "curve25519-x86_64",
    "wireguard",
)
# Bump when the image's layout or scripts change, so cached images are rebuilt.
IMAGE_FORMAT = 4
VERSIONS = "versions.json"  # written last: a directory with it is a complete image
UNUSED_DAYS = 14

INIT = """\
#!/bin/sh
# PID 1 of the interop guest: mount, load the modules, start the agent on ttyS1, reap orphans.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
mkdir -p /tmp /run /var/run
# What udev would make: wg and the host's scripts read /dev/stdin.
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
while read -r module; do
    insmod "/lib/modules/$module.ko" || echo "init: insmod $module failed"
done < /etc/modules
# WireGuard's own debug messages (handshakes, cookies, invalid packets) go to the console log.
echo 'module wireguard +p' > /sys/kernel/debug/dynamic_debug/control
dmesg -n 8
ip link set lo up
for conf in /proc/sys/net/ipv6/conf/all /proc/sys/net/ipv6/conf/default; do
    echo 0 > "$conf/accept_dad"
done
echo 1 > /proc/sys/net/ipv4/conf/all/promote_secondaries
echo "init: ready"
# The agent must not be PID 1: orphaned jobs are handed to PID 1, and a SIGCHLD arriving while
# busybox's `read` waits for a request cuts the request's line in two.
setsid /sbin/agent &
while true; do
    sleep 3600
done
"""

# The host sends one shell script a line, base64-encoded after a request number; the agent runs it
# and answers with its output, base64-encoded (any bytes survive the serial line), and its exit
# status, both tagged with the number (so a late answer to an abandoned request is told apart).
AGENT = """\
#!/bin/sh
exec </dev/ttyS1 >/dev/ttyS1 2>&1
stty raw -echo
echo "@@ready"
while read -r number request; do
    echo "$request" | base64 -d > /tmp/agent.sh
    sh /tmp/agent.sh > /tmp/agent.out 2>&1 </dev/null
    status=$?
    echo "@@output $number"
    base64 < /tmp/agent.out
    echo "@@status $number $status"
done
"""


@dataclass(frozen=True)
class Image:
    kernel: Path
    initramfs: Path
    # busybox and its applet links, for the host side to run the same commands as the guest.
    bin_dir: Path
    versions: dict[str, str]


def cache_dir() -> Path:
    """$WGPY_INTEROP_CACHE, else $XDG_CACHE_HOME/wgpy-interop, else ~/.cache/wgpy-interop."""
    if explicit := os.environ.get("WGPY_INTEROP_CACHE"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "wgpy-interop"


def build_image(cache: Path | None = None, log: Callable[[str], None] = print) -> Image:
    """The cached image for the current package versions, built first if missing.

    Without apt's package lists (no `apt-get update` yet) the newest cached image is used.
    """
    cache = cache or cache_dir()
    try:
        kernel_package, versions = _wanted_versions()
    except ImageError as error:
        cached = _newest(cache / "images")
        if cached is None:
            raise
        log(f"guest: {error}; using the cached {cached.name}")
        return _image(cached)
    digest = hashlib.sha256(json.dumps(versions, sort_keys=True).encode()).hexdigest()[:12]
    target = cache / "images" / f"{kernel_package}_{versions[kernel_package]}-{digest}"
    if not (target / VERSIONS).exists():
        log(f"guest: building {target.name}")
        _build(target, cache / "debs", kernel_package, versions)
    # Its time of last use, for `_prune` to go by.
    (target / VERSIONS).touch()
    _prune(cache)
    return _image(target)


def _wanted_versions() -> tuple[str, dict[str, str]]:
    kernel_package = debian.depends_on(KERNEL_METAPACKAGE, "linux-image-")
    versions = {
        kernel_package: debian.candidate_version(kernel_package),
        BUSYBOX_PACKAGE: debian.candidate_version(BUSYBOX_PACKAGE),
        **{package: debian.installed_version(package) for package in HOST_PROGRAMS.values()},
        "image-format": str(IMAGE_FORMAT),
    }
    return kernel_package, versions


def _image(directory: Path) -> Image:
    return Image(
        kernel=directory / "vmlinuz",
        initramfs=directory / "initramfs.cpio",
        bin_dir=directory / "bin",
        versions=json.loads((directory / VERSIONS).read_text()),
    )


def _newest(images: Path) -> Path | None:
    built = [path.parent for path in images.glob(f"*/{VERSIONS}")]
    return max(built, key=lambda path: path.stat().st_mtime, default=None)


def _prune(cache: Path) -> None:
    """Remove images and .deb files unused for UNUSED_DAYS: another run may be using any other."""
    cutoff = time.time() - UNUSED_DAYS * 86400
    for versions in (cache / "images").glob(f"*/{VERSIONS}"):
        if versions.stat().st_mtime < cutoff:
            shutil.rmtree(versions.parent, ignore_errors=True)
    for deb in (cache / "debs").glob("*.deb"):
        if deb.stat().st_mtime < cutoff:
            deb.unlink(missing_ok=True)


def _build(target: Path, debs: Path, kernel_package: str, versions: dict[str, str]) -> None:
    """Build into a scratch directory beside `target`, then rename it into place (atomically, so
    a run never sees half an image)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    scratch.chmod(0o755)
    try:
        kernel_deb = debian.download(kernel_package, versions[kernel_package], debs)
        busybox_deb = debian.download(BUSYBOX_PACKAGE, versions[BUSYBOX_PACKAGE], debs)
        vmlinuz, modules = _kernel_and_modules(kernel_deb)
        busybox = debian.file(busybox_deb, "/bin/busybox")
        (scratch / "vmlinuz").write_bytes(vmlinuz)
        applets = _write_bin_dir(scratch / "bin", busybox)
        with open(scratch / "initramfs.cpio", "wb") as out:
            _write_initramfs(out, busybox, applets, modules)
        (scratch / VERSIONS).write_text(json.dumps(versions, indent=2) + "\n")
        try:
            scratch.rename(target)
        except OSError:
            if not (target / VERSIONS).exists():
                raise
            # Another run built the same image meanwhile: keep theirs, which may be in use.
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _kernel_and_modules(deb: Path) -> tuple[bytes, list[kmod.Module]]:
    """The kernel image, and ROOT_MODULES with their dependencies in the order to load them."""
    vmlinuz = b""
    available: dict[str, kmod.Module] = {}
    for path, contents in debian.files(deb):
        if re.fullmatch(r"/boot/vmlinuz-.*", path):
            vmlinuz = contents
        elif path.endswith(".ko"):
            module = kmod.parse(contents)
            available[module.name] = module
    if not vmlinuz:
        raise ImageError(f"{deb.name} has no /boot/vmlinuz-*")
    return vmlinuz, kmod.load_order(ROOT_MODULES, available)


def _write_bin_dir(bin_dir: Path, busybox: bytes) -> list[str]:
    """busybox and a link for each of its applets; returns the applets' names."""
    bin_dir.mkdir()
    (bin_dir / "busybox").write_bytes(busybox)
    (bin_dir / "busybox").chmod(0o755)
    listing = debian.command(str(bin_dir / "busybox"), "--list")
    # The list names busybox itself: a link by that name would replace the binary.
    applets = [name for name in listing.split() if name != "busybox"]
    for applet in applets:
        (bin_dir / applet).symlink_to("busybox")
    return applets


def _write_initramfs(
    out: BinaryIO, busybox: bytes, applets: list[str], modules: list[kmod.Module]
) -> None:
    cpio = CpioWriter(out)
    for mount_point in ("dev", "proc", "sys", "tmp"):
        cpio.directory(mount_point)
    cpio.file("bin/busybox", busybox, 0o755)
    for applet in applets:
        cpio.symlink(f"bin/{applet}", "busybox")
    cpio.file("init", INIT.encode(), 0o755)
    cpio.file("sbin/agent", AGENT.encode(), 0o755)
    cpio.file("etc/modules", "".join(f"{module.name}\n" for module in modules).encode())
    for module in modules:
        cpio.file(f"lib/modules/{module.name}.ko", module.data)
    for path in _with_libraries(HOST_PROGRAMS):
        cpio.file(path, Path(path).read_bytes(), 0o755)
    cpio.close()


def _with_libraries(programs: Iterable[str]) -> list[str]:
    """The programs and every library `ldd` says they load (at the host's paths)."""
    paths: dict[str, None] = {}
    for program in programs:
        paths[program] = None
        for library in re.findall(r"(/\S+) \(0x", debian.command("ldd", program)):
            paths[library] = None
    return list(paths)
