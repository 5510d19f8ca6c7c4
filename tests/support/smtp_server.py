"""A real SMTP server for the tests: aiosmtpd run as its own process, keeping every message it
accepts (envelope and raw RFC 5322 bytes) in a directory, and the helper that starts it on a free
port and reads those messages back with the standard `email` package.

The process is `python -m aiosmtpd -n -l 127.0.0.1:<port> -c support.smtp_server.RecordingHandler
<directory> [refused address ...]`: aiosmtpd's own command line, with the handler below (imported
by the server process, so this module imports nothing beyond the standard library at the top).
A refused address gets `550 5.1.1` at RCPT TO, as a relay answers for a mailbox that does not
exist.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from email.message import EmailMessage
from itertools import count
from pathlib import Path

from leadflow_tools.devstack import free_port

TESTS_DIR = Path(__file__).resolve().parents[1]


class RecordingHandler:
    """aiosmtpd handler: refuses the listed recipients, writes each accepted message to
    `<directory>/<n>.eml` and its envelope to `<n>.json` (written last, atomically: a reader
    that sees the JSON sees the whole message)."""

    def __init__(self, directory: str, refused: tuple[str, ...] = ()) -> None:
        self.directory = Path(directory)
        self.refused = {address.lower() for address in refused}
        self._numbers = count(1)

    @classmethod
    def from_cli(cls, parser, directory: str, *refused: str) -> RecordingHandler:
        return cls(directory, refused)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address.lower() in self.refused:
            return "550 5.1.1 Mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        name = f"{time.time_ns()}-{next(self._numbers):06d}"
        raw = envelope.original_content or envelope.content
        (self.directory / f"{name}.eml").write_bytes(raw)
        record = {"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos, "eml": name}
        tmp = self.directory / f".{name}.json.tmp"
        tmp.write_text(json.dumps(record))
        os.replace(tmp, self.directory / f"{name}.json")
        return "250 2.0.0 Message accepted for delivery"


@dataclass(frozen=True)
class ReceivedMail:
    """One message the server accepted: its envelope and the parsed message."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes


def _greets(port: int) -> bool:
    """The server answers a connection with its 220 greeting."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            return s.recv(3) == b"220"
    except OSError:
        return False


class SmtpServer:
    """aiosmtpd as a separate process on a free port; `with SmtpServer(tmp_path) as smtp:`."""

    def __init__(self, directory: Path, refused: tuple[str, ...] = ()) -> None:
        self.directory = Path(directory)
        self.refused = refused
        self.port = free_port()
        self._process: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> SmtpServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                f"127.0.0.1:{self.port}",
                "-c",
                "support.smtp_server.RecordingHandler",
                str(self.directory),
                *self.refused,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while not _greets(self.port):
            if self._process.poll() is not None:
                error = self._process.stderr.read().decode(errors="replace")
                raise RuntimeError(f"aiosmtpd exited with {self._process.returncode}: {error}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"aiosmtpd did not greet on port {self.port}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process.stderr.close()
        self._process = None

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def messages(self) -> list[ReceivedMail]:
        """Every message accepted so far, in the order it arrived."""
        found = []
        for record_path in sorted(self.directory.glob("*.json")):
            record = json.loads(record_path.read_text())
            raw = (self.directory / f"{record['eml']}.eml").read_bytes()
            message = email.message_from_bytes(raw, policy=email.policy.default)
            found.append(ReceivedMail(record["mail_from"], record["rcpt_tos"], message, raw))
        return found
