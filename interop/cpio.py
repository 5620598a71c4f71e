"""A writer for the cpio "newc" format, the one the kernel unpacks as an initramfs.

The format is in the kernel's Documentation/driver-api/early-userspace/buffer-format.rst: every
entry is a 110-byte ASCII header (magic 070701, then thirteen 8-digit hex fields), the NUL-ended
name padded to a multiple of 4, then the data padded to a multiple of 4; "TRAILER!!!" ends the
archive.
"""

from __future__ import annotations

import stat
from pathlib import PurePosixPath
from typing import BinaryIO

MAGIC = b"070701"
TRAILER = "TRAILER!!!"


class CpioWriter:
    """Write entries to `out` in order; missing parent directories are written first."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._inode = 1
        self._written = 0
        self._directories: set[PurePosixPath] = {PurePosixPath(".")}

    def directory(self, name: str, mode: int = 0o755) -> None:
        path = PurePosixPath(name.lstrip("/"))
        if path not in self._directories:
            self.directory(str(path.parent))
            self._entry(str(path), stat.S_IFDIR | mode, b"", nlink=2)
            self._directories.add(path)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self.directory(str(PurePosixPath(name.lstrip("/")).parent))
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self.directory(str(PurePosixPath(name.lstrip("/")).parent))
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def close(self) -> None:
        self._entry(TRAILER, 0, b"", inode=0)

    def _entry(self, name: str, mode: int, data: bytes, nlink: int = 1, inode: int = -1) -> None:
        encoded = name.lstrip("/").encode() + b"\0"
        fields = (
            self._inode if inode < 0 else inode,
            mode,
            0,  # uid
            0,  # gid
            nlink,
            0,  # mtime: fixed, so the same inputs give the same archive
            len(data),
            0,  # devmajor
            0,  # devminor
            0,  # rdevmajor
            0,  # rdevminor
            len(encoded),
            0,  # check
        )
        self._inode += 1
        self._write(MAGIC + b"".join(b"%08X" % field for field in fields) + encoded)
        self._write(data)

    def _write(self, chunk: bytes) -> None:
        padding = -(self._written + len(chunk)) % 4
        self._out.write(chunk + bytes(padding))
        self._written += len(chunk) + padding
