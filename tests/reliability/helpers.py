"""What the reliability tests share: child processes stopped at a chosen point and killed, and
tmpfs mounts (a full or read-only disk) where this user may mount them."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

CHILD = Path(__file__).with_name("child.py")


def start_child(*args, log: Path, env: dict | None = None) -> subprocess.Popen:
    """`python child.py ARGS` from the repository root, output in `log`, TF's C++ logs off."""
    env = {**os.environ, **(env or {}), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    with open(log, "w") as handle:
        return subprocess.Popen(
            [sys.executable, str(CHILD), *map(str, args)],
            cwd=REPO,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


def wait_for(path: Path, process: subprocess.Popen, log: Path, seconds: float = 300) -> None:
    """Until `path` exists; fails if the child exits first or time runs out."""
    deadline = time.monotonic() + seconds
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"child exited {process.returncode} early:\n{log.read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{path.name} did not appear in {seconds} s:\n{log.read_text()}")
        time.sleep(0.05)


def kill_when(path: Path, process: subprocess.Popen, log: Path) -> None:
    """SIGKILL the child once it has created `path` (it then hangs where it stopped)."""
    wait_for(path, process, log)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL


def finished(process: subprocess.Popen, log: Path, seconds: float = 600) -> str:
    """The child's output once it exited 0."""
    code = process.wait(timeout=seconds)
    output = log.read_text()
    assert code == 0, f"child exited {code}:\n{output}"
    return output


def hidden_leftovers(folder: Path) -> list[str]:
    """Temporaries of interrupted writes under `folder`: `.part` files and `.tmp-` folders."""
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob(".*")
        if ".part" in p.name or p.name.startswith(".tmp-")
    )


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    """A tmpfs of `size` mounted at `path` (made), unmounted afterwards; skips the test where
    this user may not mount (it needs root with CAP_SYS_ADMIN)."""
    path.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mount.stderr.strip()}); the simulated case runs")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def remount_read_only(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


def fill(folder: Path) -> None:
    """Write into `folder` until its disk is full (ENOSPC)."""
    descriptor = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        for block in (1 << 20, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while os.write(descriptor, b"\0" * block):
                    pass
    finally:
        os.close(descriptor)
