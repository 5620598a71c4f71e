"""The kernel peer: Debian's kernel in QEMU under software emulation, networked through a tap.

QEMU runs inside a namespace, where it opens the tap, so the guest's only link is to that
namespace. The guest has two serial ports: ttyS0 is its console, kept in a log file that a failure
shows; ttyS1 is the agent (see guest.AGENT), which runs the shell scripts the host sends.
"""

from __future__ import annotations

import base64
import itertools
import socket
import subprocess
import time
from pathlib import Path

from interop._harness import Namespace, ip
from interop.errors import ScenarioFailure
from interop.guest import Image
from interop.shell import Result

BOOT_TIMEOUT = 90.0
GUEST_MAC = "52:54:00:12:34:56"
# KVM hangs on this kind of machine; `-cpu max` gives the guest the instructions the x86_64 crypto
# modules want (and RDRAND, so its random pool is ready at once).
ACCEL = ("-accel", "tcg", "-cpu", "max")


class GuestError(ScenarioFailure):
    """The guest did not boot or its agent stopped answering."""


class Guest:
    """A booted guest: run scripts in it, read its console."""

    def __init__(self, ns: Namespace, tap: str, image: Image, workdir: Path, name: str) -> None:
        self.ns = ns
        self.tap = tap
        self.console_log = workdir / f"{name}-console.log"
        self._qemu_log = workdir / f"{name}-qemu.log"
        self._agent_path = workdir / f"{name}-agent.sock"
        self._image = image
        self._process: subprocess.Popen[bytes] | None = None
        self._agent: socket.socket | None = None
        self._buffer = b""
        self._jobs = itertools.count(1)
        self._requests = itertools.count(1)
        self._broken = False

    def boot(self, timeout: float = BOOT_TIMEOUT) -> float:
        """Start QEMU and wait for the agent; return the seconds it took."""
        started = time.monotonic()
        ip("-n", self.ns.name, "tuntap", "add", "dev", self.tap, "mode", "tap")
        with open(self._qemu_log, "wb") as qemu_log:
            self._process = self.ns.popen(*self._qemu_command(), stdout=qemu_log, stderr=qemu_log)
        self._agent = self._connect(timeout)
        self._read_until(b"@@ready\n", started + timeout)
        return time.monotonic() - started

    def run(self, script: str, timeout: float = 30.0) -> Result:
        """Run `script` with the guest's sh; its output and exit status."""
        if self._agent is None or self._broken:
            raise GuestError("the guest is not running")
        number = next(self._requests)
        self._agent.sendall(b"%d %s\n" % (number, base64.b64encode(script.encode())))
        deadline = time.monotonic() + timeout
        try:
            self._read_until(b"@@output %d\n" % number, deadline)
            encoded = self._read_until(b"@@status %d " % number, deadline)
            status = self._read_until(b"\n", deadline)
        except GuestError as error:
            # A command that hangs holds up every later one: boot afresh next time.
            self._broken = True
            raise GuestError(f"{error}, running: {script.strip()[:200]!r}") from None
        return Result(int(status), base64.b64decode(encoded).decode(errors="replace"))

    def start(self, script: str) -> GuestJob:
        """Start `script` in the background, in a session of its own so `stop` ends all of it."""
        job = GuestJob(self, next(self._jobs))
        self.run(
            f"cat > {job.path}.sh <<'@@END'\n{script}\n@@END\n"
            f"setsid sh -c 'sh {job.path}.sh > {job.path}.out 2>&1 </dev/null;"
            f" echo $? > {job.path}.status' >/dev/null 2>&1 </dev/null & echo $! > {job.path}.pid"
        ).check("starting a job in the guest")
        return job

    def console_report(self, lines: int = 60) -> str:
        """The end of the guest's console log, headed for a failure report."""
        try:
            text = self.console_log.read_text(errors="replace")
        except FileNotFoundError:
            text = ""
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- the guest's console, {self.console_log.name} (last lines) ---\n{tail}"

    def alive(self) -> bool:
        """Whether QEMU runs and the agent has answered everything asked of it in time."""
        return self._process is not None and self._process.poll() is None and not self._broken

    def stop(self) -> None:
        if self._agent is not None:
            self._agent.close()
            self._agent = None
        if self._process is not None:
            self.ns.stop(self._process)
            self._process = None

    def _qemu_command(self) -> list[str]:
        return [
            "qemu-system-x86_64", *ACCEL,
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-m", "512", "-smp", "1",
            "-kernel", str(self._image.kernel), "-initrd", str(self._image.initramfs),
            "-append", "console=ttyS0 panic=-1 loglevel=7",
            "-chardev", f"file,id=console,path={self.console_log}",
            "-serial", "chardev:console",
            # wait=on: the guest starts only once the host is connected, so nothing is missed.
            "-chardev", f"socket,id=agent,path={self._agent_path},server=on,wait=on",
            "-serial", "chardev:agent",
            "-netdev", f"tap,id=net0,ifname={self.tap},script=no,downscript=no",
            # romfile= leaves out the PXE option ROM: nothing boots from the network here.
            # event_idx=off: once, with it on, QEMU 7.2 stopped taking the guest's transmissions
            # minutes into a busy transfer (virtio_net "TX timeout" on the console).
            "-device", f"virtio-net-pci,netdev=net0,mac={GUEST_MAC},romfile=,event_idx=off",
        ]  # fmt: skip

    def _connect(self, timeout: float) -> socket.socket:
        deadline = time.monotonic() + timeout
        while True:
            agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                agent.connect(str(self._agent_path))
                return agent
            except OSError:
                agent.close()
                if not self.alive() or time.monotonic() > deadline:
                    raise GuestError(f"QEMU did not start: {self._qemu_output()}") from None
                time.sleep(0.05)

    def _read_until(self, marker: bytes, deadline: float) -> bytes:
        """Everything the agent sends up to `marker` (which is consumed); whatever came before
        a request's first marker is a late answer to an abandoned one."""
        assert self._agent is not None
        while marker not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise GuestError("the guest's agent did not answer in time")
            self._agent.settimeout(left)
            try:
                chunk = self._agent.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise GuestError(f"the guest's agent went away: {self._qemu_output()}")
            self._buffer += chunk
        before, self._buffer = self._buffer.split(marker, 1)
        return before

    def _qemu_output(self) -> str:
        return self._qemu_log.read_text(errors="replace").strip() if self._qemu_log.exists() else ""


class GuestJob:
    def __init__(self, guest: Guest, number: int) -> None:
        self._guest = guest
        self.path = f"/tmp/job{number}"

    def wait(self, timeout: float) -> Result:
        deadline = time.monotonic() + timeout
        while True:
            done = self._guest.run(f"cat {self.path}.status 2>/dev/null")
            if done.status == 0 and done.output.strip():
                output = self._guest.run(f"cat {self.path}.out").output
                return Result(int(done.output), output)
            if time.monotonic() > deadline:
                raise ScenarioFailure(f"a command in the guest did not end within {timeout} s")
            time.sleep(0.25)

    def stop(self) -> None:
        # A negative pid is the job's process group (busybox's kill takes no "--").
        self._guest.run(f"kill -TERM -$(cat {self.path}.pid) 2>/dev/null")
