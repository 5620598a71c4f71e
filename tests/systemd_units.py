"""systemd unit files as the tests read them: sections of (possibly repeated) keys, and the
commands of a template's instance as argument lists, its `%i` and `%I` expanded."""

from __future__ import annotations

import shlex

Sections = dict[str, dict[str, list[str]]]


def sections(text: str) -> Sections:
    """A unit file's sections as {section: {key: [values in order]}}."""
    parsed: Sections = {}
    section: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("["):
            section = parsed.setdefault(line.strip("[]"), {})
        elif "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            section.setdefault(key, []).append(value)
    return parsed


def commands(text: str, key: str, instance: str) -> list[list[str]]:
    """The command lines of `key` (ExecStart, ...) of the unit's `instance`, with its
    Environment= assignments in front (through env(1)), as systemd would run them."""
    service = sections(text)["Service"]
    environment = ["env", *service.get("Environment", [])]
    return [
        environment + shlex.split(line.replace("%i", instance).replace("%I", instance))
        for line in service.get(key, [])
    ]
