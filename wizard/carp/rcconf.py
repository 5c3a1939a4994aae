"""Reading FreeBSD's shell-variable files (/etc/rc.conf, /boot/loader.conf) as sh would assign them."""

from __future__ import annotations

import re
import shlex

ASSIGN = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def parse_rc(text: str) -> dict[str, str]:
    """Each variable's value; the last assignment wins; quotes and comments removed."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        m = ASSIGN.match(line)
        if not m:
            continue
        try:
            parts = shlex.split(m.group(2), comments=True)
        except ValueError:
            continue
        values[m.group(1)] = parts[0] if parts else ""
    return values
