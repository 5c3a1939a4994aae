"""Processes for the lab controller: run a command, and check or kill what the lab started."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


class LabError(RuntimeError):
    """A lab operation failed; the message says what and where."""


def sh(*argv: str, check: bool = True, timeout: float = 30, env: dict[str, str] | None = None,
       input: str | None = None) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, input=input,
                         check=False)
    if check and res.returncode != 0:
        raise LabError("%s failed (%d): %s" % (" ".join(argv), res.returncode, res.stderr.strip()))
    return res


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    if pid <= 1:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
