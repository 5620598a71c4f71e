"""Which file and interface a command-line argument names, and `save`'s atomic write.

From linux.bash parse_options and save_config: a bare interface name means
/etc/wireguard/NAME.conf; any other argument is a path whose file name is the interface name
(1 to 15 of [a-zA-Z0-9_=+.-]) followed by `.conf`.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from wgpy.quick import QuickError

CONFIG_DIR = Path("/etc/wireguard")
MAX_NAME_LENGTH = 15  # IFNAMSIZ less the NUL
NAME_CHARACTERS = "a-z A-Z 0-9 _ = + . -"
_NAME = rf"[a-zA-Z0-9_=+.-]{{1,{MAX_NAME_LENGTH}}}"
_BARE_NAME = re.compile(_NAME)
_FILE_NAME = re.compile(rf"(?:^|/)({_NAME})\.conf\Z")


def locate(argument: str, config_dir: Path = CONFIG_DIR) -> tuple[Path, str]:
    """(the config file with symbolic links resolved, the interface name)."""
    path = config_dir / f"{argument}.conf" if _BARE_NAME.fullmatch(argument) else Path(argument)
    if not path.exists():
        raise QuickError(f"`{path}' does not exist")
    match = _FILE_NAME.search(str(path))
    if match is None:
        raise QuickError(
            f"The config file must be a valid interface name, followed by .conf{_why(path)}"
        )
    return path.resolve(), match[1]


def _why(path: Path) -> str:
    """What is wrong with a file name that is not an interface name and `.conf`."""
    name = path.name.removesuffix(".conf")
    if not name or path.name == name:
        return ""
    if len(name) > MAX_NAME_LENGTH:
        return f": `{name}' has {len(name)} characters, an interface name at most {MAX_NAME_LENGTH}"
    return f": `{name}' has a character other than {NAME_CHARACTERS}"


def world_accessible(path: Path) -> bool:
    """Whether others may reach the file: its mode and its directory's both grant them
    something (the warning of parse_options)."""
    file_mode, dir_mode = path.stat().st_mode, path.parent.stat().st_mode
    return bool(file_mode & dir_mode & (stat.S_IRWXO))


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to PATH.tmp with mode 0600, sync it, and rename it over PATH."""
    temporary = path.with_name(f"{path.name}.tmp")
    old_umask = os.umask(0o077)
    try:
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    finally:
        os.umask(old_umask)
