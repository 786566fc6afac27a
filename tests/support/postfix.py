"""A private Postfix instance for end-to-end tests: its own configuration, queue and log under a
temporary directory, listening on one loopback port, started and stopped by the test.

Debian's ``postfix`` package provides the programs; nothing of the system's own Postfix (its
``/etc/postfix``, its queue) is read or changed. Starting one needs root (``master`` drops to
the ``postfix`` user), so tests skip without it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

POSTFIX = shutil.which("postfix") or shutil.which("postfix", path="/usr/sbin")
#: Why a private Postfix cannot run here (None: it can).
UNAVAILABLE = (
    "postfix is not installed (Debian's postfix package)"
    if POSTFIX is None
    else "a private Postfix needs root"
    if os.geteuid() != 0
    else None
)

#: Every service a relaying, bouncing Postfix needs; no chroot (the instance has no jail).
MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
lmtp      unix  - - n - - lmtp
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivatePostfix:
    """One Postfix instance: ``start()``, mail to ``127.0.0.1:port``, ``stop()``."""

    def __init__(self, port: int, *, transports: dict[str, str], default_transport: str) -> None:
        # Its own directory, which the postfix user can reach (pytest's tmp_path is 0700).
        self.root = Path(tempfile.mkdtemp(prefix="sgw-postfix-"))
        self.root.chmod(0o755)
        self.port = port
        self.config = self.root / "etc"
        self.log = self.root / "maillog"
        self.transports = transports
        self.default_transport = default_transport

    def _main_cf(self) -> str:
        maps = ", ".join(f"{domain}={where}" for domain, where in self.transports.items())
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": self.root / "queue",
            "data_directory": self.root / "data",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "myhostname": "mta.test",
            "mydomain": "mta.test",
            "myorigin": "mta.test",
            "mydestination": "",
            "mynetworks": "127.0.0.0/8",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "smtp_dns_support_level": "disabled",
            "transport_maps": f"inline:{{ {maps} }}",
            "default_transport": self.default_transport,
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "maillog_file": self.log,
            "maillog_file_prefixes": self.root,
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "delay_warning_time": "0",
            "notify_classes": "",
        }
        return "".join(f"{name} = {value}\n" for name, value in settings.items())

    def _postfix(self, command: str) -> subprocess.CompletedProcess[str]:
        assert POSTFIX is not None
        # postfix(1) reports to the terminal or syslog only: script(1) gives it a terminal.
        line = f"{POSTFIX} -c {self.config} {command}"
        return subprocess.run(
            ["script", "-qec", line, "/dev/null"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def start(self) -> None:
        """Write the configuration, create the queue, start ``master``; wait for the port."""
        for folder in ("etc", "queue", "data"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        shutil.chown(self.root / "data", "postfix")
        (self.config / "main.cf").write_text(self._main_cf())
        (self.config / "master.cf").write_text(MASTER_CF.format(port=self.port))
        started = self._postfix("start")
        if started.returncode != 0:
            raise RuntimeError(f"postfix start failed: {started.stdout}{self.tail()}")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"postfix did not listen on {self.port}: {self.tail()}")

    def stop(self) -> None:
        """Stop this instance's ``master`` (by its own pid file, never by name)."""
        pid_file = self.root / "queue" / "pid" / "master.pid"
        pid = int(pid_file.read_text().split()[0]) if pid_file.exists() else None
        self._postfix("stop")
        deadline = time.monotonic() + 10
        while pid is not None and time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)

    def remove(self) -> None:
        """Delete the instance's directory (once stopped)."""
        shutil.rmtree(self.root, ignore_errors=True)

    def tail(self, lines: int = 30) -> str:
        """The end of the instance's log, for failure messages."""
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
