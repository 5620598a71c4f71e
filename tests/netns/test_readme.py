"""The README's commands work as written, after the set-up command it gives them
(`scripts/install-deps`), in a namespace of their own."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from peers import userspace_wg_quick

from wgpy.client import socket_path
from wgpy.lab.netns import namespace, unique_ifname, wait_until

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"


def code_block(section: str) -> str:
    """The first indented code block under the README's `## section` heading."""
    text = README.read_text().split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"(?:^    \S.*\n)+", text, re.MULTILINE)
    assert match is not None, f"no code block under ## {section}"
    return "".join(line[4:] + "\n" for line in match[0].splitlines())


@pytest.mark.parametrize("command", ["wgpy", "wgpy-quick"])
def test_the_readme_s_commands_are_on_path_after_install_deps(command: str) -> None:
    assert shutil.which(command), f"{command} is not on PATH: run scripts/install-deps"


@pytest.mark.netns("wg-quick", "wg", "bash")
def test_the_use_section_runs_as_written(tmp_path: Path) -> None:
    assert shutil.which("wgpy") and shutil.which("wgpy-quick"), "run scripts/install-deps"
    ifname = unique_ifname("rd")
    script = code_block("Use").replace("wg0", ifname)
    assert "WG_QUICK_USERSPACE_IMPLEMENTATION=wgpy wg-quick up" in script
    config = tmp_path / f"{ifname}.conf"
    config.write_text((REPO / "configs/client-split.conf").read_text())
    config.chmod(0o600)
    # wg-quick takes the kernel's WireGuard where it can: this copy of it takes wgpy always.
    userspace_wg_quick(tmp_path / "wg-quick")
    path = f"{tmp_path}:{os.environ['PATH']}"
    with namespace() as ns:
        try:
            result = ns.run(
                "env", f"PATH={path}", "bash", "-e", "-c", f"cd {tmp_path}\n{script}", check=False
            )
            assert result.returncode == 0, result.stderr
            assert f"[#] wgpy {ifname}" in result.stderr
            assert ifname in ns.run("wg", "show", "interfaces").stdout
        finally:
            ns.run("ip", "link", "del", ifname, check=False)
    assert wait_until(lambda: not socket_path(ifname).exists(), 5)
