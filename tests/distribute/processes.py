"""Fresh Python processes for the distribution tests: bounded in time, always ended, their
output kept for the failure message."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

QUIET = {"TF_CPP_MIN_LOG_LEVEL": "2"}


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on 127.0.0.1 (held open together while chosen)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


@contextlib.contextmanager
def started(commands: list[list[str]], envs: list[dict] | None = None) -> Iterator[list]:
    """Start every command (with `os.environ` + `QUIET` + its `envs` entry); yield the
    `(process, log)` pairs; on leaving, kill whatever still runs and wait for it."""
    envs = envs or [{}] * len(commands)
    running = []
    with tempfile.TemporaryDirectory() as folder:
        try:
            for i, (command, env) in enumerate(zip(commands, envs, strict=True)):
                log = Path(folder) / f"{i}.log"
                with open(log, "w") as handle:
                    process = subprocess.Popen(
                        command,
                        stdout=handle,
                        stderr=subprocess.STDOUT,
                        env={**os.environ, **QUIET, **env},
                    )
                running.append((process, log))
            yield running
        finally:
            for process, _ in running:
                if process.poll() is None:
                    process.kill()
            for process, _ in running:
                process.wait()


def finish(running: list, timeout: float) -> None:
    """Wait for every process (`timeout` seconds in all); `AssertionError` with the logs'
    tails when one fails or runs out of time."""
    deadline = time.monotonic() + timeout
    for process, _ in running:
        try:
            code = process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            code = f"still running after {timeout} s"
        if code != 0:
            tails = "\n".join(f"--- {p.args}\n{tail(f)}" for p, f in running)
            raise AssertionError(f"{process.args} failed ({code}):\n{tails}")


def tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def run_script(command: list[str], timeout: float) -> None:
    """Run one command to the end within `timeout` seconds (see `finish`)."""
    with started([command]) as running:
        finish(running, timeout)
