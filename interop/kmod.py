"""Kernel modules as insmod takes them: each one's dependencies read from its .modinfo section
(what depmod reads to write modules.dep), and the order to load a set of them in."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from interop.errors import ImageError


@dataclass(frozen=True)
class Module:
    name: str
    depends: tuple[str, ...]
    data: bytes


def parse(data: bytes) -> Module:
    """A module from the bytes of its .ko file."""
    entries = (entry.decode().split("=", 1) for entry in _modinfo(data).split(b"\0"))
    info = dict(entry for entry in entries if len(entry) == 2)
    depends = (name for name in info.get("depends", "").split(",") if name)
    return Module(canonical(info["name"]), tuple(map(canonical, depends)), data)


def canonical(name: str) -> str:
    """Module names treat '-' and '_' alike (as kmod does); the file names keep the dash."""
    return name.replace("-", "_")


def load_order(roots: Iterable[str], available: dict[str, Module]) -> list[Module]:
    """`roots` and everything they depend on, each after its dependencies."""
    order: list[Module] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        if name not in available:
            raise ImageError(f"the kernel package has no module {name}")
        for dependency in available[name].depends:
            visit(dependency)
        order.append(available[name])

    for root in roots:
        visit(canonical(root))
    return order


def _modinfo(elf: bytes) -> bytes:
    """The .modinfo section of an ELF64 little-endian file: NUL-separated key=value strings.

    Offsets from the ELF-64 format (elf(5)): e_shoff at 0x28, then e_shentsize, e_shnum and
    e_shstrndx at 0x3A; a section header holds sh_name, sh_type, sh_flags, sh_addr, sh_offset,
    sh_size in that order.
    """
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise ImageError("a kernel module that is not ELF64 little-endian")
    (headers,) = struct.unpack_from("<Q", elf, 0x28)
    entry_size, count, names_index = struct.unpack_from("<HHH", elf, 0x3A)

    def section(index: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, offset, size = struct.unpack_from(
            "<IIQQQQ", elf, headers + index * entry_size
        )
        return name, offset, size

    _, names, _ = section(names_index)
    for index in range(count):
        name, offset, size = section(index)
        if elf[names + name : elf.index(b"\0", names + name)] == b".modinfo":
            return elf[offset : offset + size]
    raise ImageError("a kernel module without .modinfo")
