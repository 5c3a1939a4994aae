"""What reaches a node's login shell: every command runs under `sh -c`, quoted once, whatever that shell is.

sshd runs an exec request with the user's login shell. On FreeBSD up to 13.x root's is /bin/csh (tcsh), which
rejects sh syntax (`c=$?`, `$(…)`, `{ …; }`, `2>&1`), so carpweb never hands its commands to the login shell
itself: it sends `sh -c '…'` (through `sudo -n` or `doas -n` where the privilege asks for it). The quoting is the
one both shells read alike: single quotes; a `'` as `'\\''`; a `!` (csh's history character, special even inside
single quotes) as `'\\!'`. A newline cannot be quoted for csh at all, so carpweb's commands are one line each
(file contents travel as printf escapes, see `printf_text`). Pure: no I/O.
"""

from __future__ import annotations

import shlex

WRAPPERS = {"root": "", "sudo": "sudo -n ", "doas": "doas -n "}


def quote_for_any_shell(text: str) -> str:
    """One word for sh and csh alike. Refuses a newline (no csh quoting keeps one)."""
    if "\n" in text or "\r" in text:
        raise ValueError("a command sent to a node must be one line (csh cannot quote a newline)")
    return "'" + text.replace("'", "'\\''").replace("!", "'\\!'") + "'"


def remote_command(command: str, privilege: str) -> str:
    """The exec request for `command`: `sh -c` with one quoting, behind sudo -n or doas -n when asked."""
    return f"{WRAPPERS[privilege]}sh -c {quote_for_any_shell(command)}"


def printf_text(text: str) -> str:
    """Arguments of `printf '%b' …` that print `text` exactly: its backslashes and newlines as escapes, so a
    whole file fits on one command line."""
    return "'%b' " + shlex.quote(text.replace("\\", "\\\\").replace("\n", "\\n"))
