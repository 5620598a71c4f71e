"""`wgpy run CONFIG -- COMMAND` as nobody with every capability dropped, in the rootless lab's
client namespace (wgpy/lab/proxy.py: a wireguard-go server with an HTTP server and dnsmasq
behind it), with a full-tunnel config: COMMAND reaches everything through the tunnel on Linux's
stack, its status and signals pass through, the caller's network is untouched, and nothing is
left behind."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import select
import signal
import socket
import subprocess
import sys
import termios
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from wgpy.io.uapi_server import is_live
from wgpy.lab.netns import STARTUP_TIMEOUT, Namespace, unique_ifname, wait_until
from wgpy.lab.proxy import (
    HTTP_PORT,
    NOBODY,
    SERVICE_NAME,
    SERVICE_V4,
    SERVICE_V6,
    UNPRIVILEGED,
    ProxyLab,
    rootless_lab,
)

pytestmark = pytest.mark.netns("wireguard-go", "wg", "curl", "dnsmasq", "setpriv", "nft", "unshare")

RUN_TIMEOUT = 300.0
FETCH_SIZE = 100 << 20
PUBLISHED_PORT, INNER_PORT = 8080, 80


@pytest.fixture(scope="module")
def lab() -> Iterator[ProxyLab]:
    """The rootless lab as the kernel stack has it (/dev/net/tun open to all), its client config
    made a full tunnel (AllowedIPs 0.0.0.0/0, ::/0)."""
    with rootless_lab("kernel") as lab:
        text = lab.config.read_text()
        lab.config.write_text(text.replace("AllowedIPs = ", "AllowedIPs = 0.0.0.0/0, ::/0, "))
        yield lab


@pytest.fixture
def runtime(lab: ProxyLab) -> Iterator[Path]:
    """nobody's XDG_RUNTIME_DIR and TMPDIR for one test, checked empty at its end."""
    directory = lab.files / f"run-{secrets.token_hex(4)}"
    directory.mkdir()
    os.chown(directory, NOBODY, NOBODY)
    yield directory
    assert sorted(directory.rglob("*")) in ([], [directory / "wireguard"])


class Run:
    """One `wgpy run` in the lab's client namespace, its processes marked by an environment
    variable so that any left behind show."""

    def __init__(
        self, lab: ProxyLab, runtime: Path, command: Sequence[str], options: Sequence[str]
    ) -> None:
        self.ns = lab.client
        self.name = unique_ifname("run")
        self.marker = secrets.token_hex(8)
        self.socket = runtime / "wireguard" / f"{self.name}.sock"
        self.args = [
            "ip", "netns", "exec", lab.client.name, *UNPRIVILEGED, sys.executable, "-m",
            "wgpy.cli.wgpy", "run", "--name", self.name, *options, str(lab.config), "--", *command,
        ]  # fmt: skip
        self.env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "TMPDIR": str(runtime),
                    "WGPY_RUN_TEST": self.marker}  # fmt: skip
        self.env.pop("WGPY_RUN_DIR", None)
        self.cwd = lab.files

    def run(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.args, env=self.env, cwd=self.cwd, capture_output=True,
                              text=True, timeout=RUN_TIMEOUT, check=False)  # fmt: skip

    @contextlib.contextmanager
    def started(self) -> Iterator[subprocess.Popen[bytes]]:
        """Running, once its configuration socket is there; ended by pid on exit (SIGTERM,
        which it passes on to COMMAND)."""
        process = subprocess.Popen(self.args, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL)
        try:
            assert wait_until(lambda: is_live(self.socket) or process.poll() is not None,
                              STARTUP_TIMEOUT), "wgpy run did not start"  # fmt: skip
            assert process.poll() is None
            yield process
        finally:
            self.ns.stop(process)

    def leftovers(self) -> list[int]:
        """The processes still carrying this run's marker."""
        found = []
        for environ in Path("/proc").glob("[0-9]*/environ"):
            try:
                if f"WGPY_RUN_TEST={self.marker}".encode() in environ.read_bytes().split(b"\0"):
                    found.append(int(environ.parent.name))
            except OSError:
                pass
        return found


def wgpy_run(lab: ProxyLab, runtime: Path, *command: str, options: Sequence[str] = ()) -> Run:
    return Run(lab, runtime, command, options)


def test_curl_fetches_100_mib_through_the_tunnel_intact(lab: ProxyLab, runtime: Path) -> None:
    served = lab.serve_file("big", FETCH_SIZE)
    fetched = runtime / "big"
    url = f"http://{SERVICE_NAME}:{HTTP_PORT}/big"
    result = wgpy_run(lab, runtime, "curl", "-sS", "--fail", "-o", str(fetched), url).run()
    try:
        assert result.returncode == 0, result.stderr
        assert sha256(fetched) == sha256(served)
    finally:
        fetched.unlink(missing_ok=True)


def test_names_resolve_through_the_tunnels_dns(lab: ProxyLab, runtime: Path) -> None:
    result = wgpy_run(lab, runtime, "getent", "hosts", SERVICE_NAME).run()

    assert result.returncode == 0, result.stderr
    address, name = result.stdout.split()
    assert (address, name) in ((SERVICE_V4, SERVICE_NAME), (SERVICE_V6, SERVICE_NAME))


def test_the_default_route_inside_is_the_tunnel(lab: ProxyLab, runtime: Path) -> None:
    run = wgpy_run(lab, runtime, "ip", "-4", "route", "show", "default")
    result = run.run()

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:3] == ["default", "dev", run.name]


def test_the_callers_network_is_unchanged_before_during_and_after(
    lab: ProxyLab, runtime: Path
) -> None:
    before = network_state(lab.client)
    with wgpy_run(lab, runtime, "sleep", "60").started():
        during = network_state(lab.client)
    after = network_state(lab.client)

    assert before == during == after


@pytest.mark.parametrize(("command", "status"), [
    ("exit 3", 3),
    ("kill -SEGV $$", 128 + signal.SIGSEGV),
    ("kill -KILL $$", 128 + signal.SIGKILL),
])  # fmt: skip
def test_commands_status_is_wgpys_and_nothing_is_left_behind(
    lab: ProxyLab, runtime: Path, command: str, status: int
) -> None:
    run = wgpy_run(lab, runtime, "sh", "-c", command)
    result = run.run()

    assert result.returncode == status, result.stderr
    assert run.leftovers() == []
    assert not run.socket.exists()


def test_a_command_not_found_is_127_as_in_a_shell(lab: ProxyLab, runtime: Path) -> None:
    run = wgpy_run(lab, runtime, "no-such-command-run18")
    result = run.run()

    assert result.returncode == 127
    assert result.stderr.strip() == "wgpy run: no-such-command-run18: No such file or directory"
    assert run.leftovers() == []


def test_a_name_already_running_is_refused_in_one_line(lab: ProxyLab, runtime: Path) -> None:
    first = wgpy_run(lab, runtime, "sleep", "60")
    with first.started():
        second = Run(lab, runtime, ["true"], ["--name", first.name])
        result = second.run()

    assert result.returncode == 1
    assert result.stderr == f"wgpy run: {first.socket} is served by another process\n"
    assert second.leftovers() == []


def test_sigterm_to_wgpy_ends_the_command_with_143(lab: ProxyLab, runtime: Path) -> None:
    run = wgpy_run(lab, runtime, "sleep", "60")
    with run.started() as process:
        process.send_signal(signal.SIGTERM)
        status = process.wait(STARTUP_TIMEOUT)

    assert status == 128 + signal.SIGTERM
    assert run.leftovers() == []


def test_a_terminals_ctrl_c_is_the_commands_to_handle(lab: ProxyLab, runtime: Path) -> None:
    # The terminal signals its whole foreground job, wgpy's processes too: they leave it to
    # COMMAND, which here counts it and exits 0, and so does wgpy.
    counter = runtime / "count_sigint.py"
    counter.write_text(COUNT_SIGINT)
    run = wgpy_run(lab, runtime, sys.executable, str(counter))
    try:
        output, status = run_on_a_terminal(run, keys_after_ready=b"\x03")
    finally:
        counter.unlink()

    assert re.findall(r"SIGINT (\d+)", output) == ["1"]  # the terminal echoes ^C before it
    assert status == 0


def test_sigkill_of_wgpy_still_leaves_nothing_behind(lab: ProxyLab, runtime: Path) -> None:
    run = wgpy_run(lab, runtime, "sleep", "60")
    with run.started() as process:
        process.kill()
        process.wait()

    assert wait_until(lambda: not run.leftovers() and not run.socket.exists(), STARTUP_TIMEOUT)


def test_the_command_runs_as_the_caller_with_no_capability(lab: ProxyLab, runtime: Path) -> None:
    result = wgpy_run(lab, runtime, "grep", "-E", "^(Uid|Gid|CapEff):", "/proc/self/status").run()

    fields = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert fields["Uid"].split() == [str(NOBODY)] * 4
    assert fields["Gid"].split() == [str(NOBODY)] * 4
    assert int(fields["CapEff"], 16) == 0


def test_a_published_port_reaches_a_server_inside(lab: ProxyLab, runtime: Path) -> None:
    page = runtime / "index.html"
    page.write_text("inside\n")
    server = ("python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(runtime),
              str(INNER_PORT))  # fmt: skip
    options = ("-p", f"127.0.0.1:{PUBLISHED_PORT}:{INNER_PORT}")
    try:
        with wgpy_run(lab, runtime, *server, options=options).started():
            assert wait_until(lambda: fetch_in(lab.client, PUBLISHED_PORT) == "inside\n",
                              STARTUP_TIMEOUT, interval=0.2)  # fmt: skip
    finally:
        page.unlink()


def test_a_published_udp_port_carries_datagrams_both_ways(lab: ProxyLab, runtime: Path) -> None:
    echo = (sys.executable, "-m", "wgpy.lab.echo", "--udp", str(INNER_PORT), "--host", "127.0.0.1")
    options = ("-p", f"127.0.0.1:{PUBLISHED_PORT}:{INNER_PORT}/udp")
    with wgpy_run(lab, runtime, *echo, options=options).started():
        assert wait_until(lambda: udp_echo_in(lab.client, PUBLISHED_PORT, b"run18"),
                          STARTUP_TIMEOUT, interval=0.2)  # fmt: skip


def test_a_port_that_cannot_be_published_ends_the_run_in_one_line(
    lab: ProxyLab, runtime: Path
) -> None:
    with lab.client.entered(), socket.create_server(("127.0.0.1", PUBLISHED_PORT)):
        run = wgpy_run(lab, runtime, "sleep", "60", options=("-p", f"{PUBLISHED_PORT}:80"))
        result = run.run()

    assert result.returncode == 1
    assert result.stderr == "wgpy run: -p: Address already in use\n"
    assert run.leftovers() == []


def test_wgpy_show_reads_the_running_interface(lab: ProxyLab, runtime: Path) -> None:
    run = wgpy_run(lab, runtime, "sleep", "60")
    with run.started():
        shown = subprocess.run(
            [*UNPRIVILEGED, sys.executable, "-m", "wgpy.cli.wgpy", "show", run.name],
            env=run.env, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
        )  # fmt: skip

    assert shown.returncode == 0, shown.stderr
    assert f"interface: {run.name}" in shown.stdout
    assert "latest handshake" in shown.stdout


def test_the_proxy_on_auto_takes_the_kernel_stack_and_says_so(lab: ProxyLab) -> None:
    process = lab.start_proxy("--socks5", "1085", "--stack", "auto",
                              environment={"LOG_LEVEL": "verbose"})  # fmt: skip
    lab.client.stop(process)

    assert "--stack auto: kernel" in lab.output(process)


def test_without_user_namespaces_one_line_says_why_and_exits_1(lab: ProxyLab) -> None:
    # A user namespace of the test's own, where no more may be made: the host is not touched.
    script = 'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"'
    result = subprocess.run(
        [*UNPRIVILEGED, "unshare", "--user", "--map-root-user", "sh", "-c", script, "sh",
         sys.executable, "-m", "wgpy.cli.wgpy", "run", str(lab.config), "--", "true"],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False, cwd=lab.files,
    )  # fmt: skip

    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert "user.max_user_namespaces = 0" in line
    assert "wgpy proxy" in line


# Counts the SIGINTs that come within two seconds of saying it is ready.
COUNT_SIGINT = """\
import signal, time
count = 0
def counted(*_):
    global count
    count += 1
signal.signal(signal.SIGINT, counted)
print("ready", flush=True)
deadline = time.monotonic() + 2
while time.monotonic() < deadline:
    time.sleep(0.1)
print("SIGINT", count, flush=True)
"""


def run_on_a_terminal(run: Run, keys_after_ready: bytes) -> tuple[str, int]:
    """What `run` writes on a terminal of its own (it the foreground job), typing
    `keys_after_ready` once COMMAND says "ready"; and its exit status."""
    controller, terminal = os.openpty()
    process = subprocess.Popen(
        run.args, env=run.env, cwd=run.cwd, stdin=terminal, stdout=terminal, stderr=terminal,
        start_new_session=True, preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
    )  # fmt: skip
    os.close(terminal)
    output = b""
    try:
        while b"ready" not in output:
            output += _read_within(controller, STARTUP_TIMEOUT)
        os.write(controller, keys_after_ready)
        process.wait(STARTUP_TIMEOUT)
        with contextlib.suppress(OSError):  # EIO once every end of the terminal is closed
            while chunk := _read_within(controller, 1.0):
                output += chunk
    finally:
        run.ns.stop(process)
        os.close(controller)
    return output.decode(errors="replace"), process.returncode


def _read_within(fd: int, timeout: float) -> bytes:
    if not select.select([fd], [], [], timeout)[0]:
        raise TimeoutError("nothing more on the terminal")
    return os.read(fd, 4096)


def network_state(ns: Namespace) -> list[str]:
    """The caller's routes, rules, links, nftables and resolv.conf, as text."""
    commands = [("ip", "-4", "route", "show", "table", "all"),
                ("ip", "-6", "route", "show", "table", "all"),
                ("ip", "-4", "rule"), ("ip", "-6", "rule"), ("ip", "-o", "link"),
                ("nft", "list", "ruleset")]  # fmt: skip
    return [ns.run(*command).stdout for command in commands] + [
        Path("/etc/resolv.conf").read_text(),
        ns.run("cat", "/etc/resolv.conf").stdout,
    ]


def fetch_in(ns: Namespace, port: int) -> str | None:
    with ns.entered():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=2) as reply:
                return str(reply.read().decode())
        except OSError:
            return None


def udp_echo_in(ns: Namespace, port: int, payload: bytes) -> bool:
    with ns.entered():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        sock.settimeout(0.5)
        sock.sendto(payload, ("127.0.0.1", port))
        try:
            return sock.recv(2048) == payload
        except OSError:
            return False


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
