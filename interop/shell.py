"""Shell commands on a peer's host, the same way whether that host is a namespace or the guest.

Scenarios speak POSIX shell with busybox's applets (`busybox nc`, `sha256sum`, `ping -I`), which
the guest has as its only userland and a namespace has through `Image.bin_dir` on its PATH.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from interop._harness import Namespace
from interop.errors import ScenarioFailure


@dataclass(frozen=True)
class Result:
    status: int
    output: str

    def check(self, what: str) -> str:
        """The output, or ScenarioFailure naming `what` if the command failed."""
        if self.status != 0:
            raise ScenarioFailure(f"{what} exited {self.status}: {self.output.strip()[-800:]}")
        return self.output


class Job(Protocol):
    """A command running in the background on a peer's host."""

    def wait(self, timeout: float) -> Result: ...

    def stop(self) -> None: ...


class Shell(Protocol):
    """Where a peer's commands run."""

    def run(self, script: str, timeout: float = 30.0) -> Result: ...

    def start(self, script: str) -> Job: ...


class NamespaceShell:
    """`sh -c` inside a namespace, with busybox's applets after the host's own programs."""

    def __init__(self, ns: Namespace, busybox_dir: Path) -> None:
        self.ns = ns
        self._env = {**os.environ, "PATH": f"{os.environ.get('PATH', '')}:{busybox_dir}"}

    def run(self, script: str, timeout: float = 30.0) -> Result:
        try:
            result = subprocess.run(
                ["ip", "netns", "exec", self.ns.name, "sh", "-c", script],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                env=self._env,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ScenarioFailure(f"{script!r} did not end within {timeout} s") from None
        return Result(result.returncode, result.stdout)

    def start(self, script: str) -> NamespaceJob:
        log = tempfile.TemporaryFile()  # noqa: SIM115 - the job owns it and closes it
        # A session of its own, so that `stop` ends the whole pipeline, not just the shell.
        process = self.ns.popen(
            "sh", "-c", script, stdout=log, stderr=subprocess.STDOUT, env=self._env,
            start_new_session=True,
        )  # fmt: skip
        return NamespaceJob(self.ns, process, log, script)


class NamespaceJob:
    """A command running in a namespace, its output kept in a temporary file."""

    def __init__(
        self, ns: Namespace, process: subprocess.Popen[bytes], log: IO[bytes], script: str
    ) -> None:
        self._ns = ns
        self._process = process
        self._log = log
        self._script = script

    def wait(self, timeout: float) -> Result:
        try:
            status = self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise ScenarioFailure(f"{self._script!r} did not end within {timeout} s") from None
        self._log.seek(0)
        output = self._log.read().decode(errors="replace")
        self.stop()
        return Result(status, output)

    def stop(self) -> None:
        """End the job and everything it started (idempotent)."""
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGTERM)
        self._ns.stop(self._process)
        if self._process in self._ns.processes:
            self._ns.processes.remove(self._process)
        self._log.close()
