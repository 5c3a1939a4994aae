"""sysrc: shell-variable files (/etc/rc.conf, /boot/loader.conf) read and edited like FreeBSD's sysrc(8)."""

from __future__ import annotations

import getopt
import os
import re
import subprocess
import tempfile

from .state import Host, err, out

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ASSIGN_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$")  # a line sysrc edits in place


def parse(text: str) -> dict[str, str]:
    """Each variable's value as FreeBSD's sysrc reads it: by sourcing the file with sh in a clean sub-shell
    (sysrc.subr's f_sysrc_get does exactly that). A file sh cannot parse gives nothing, as sh stops there."""
    with tempfile.NamedTemporaryFile("w", prefix="rc.", suffix=".conf") as f:
        f.write(text)
        f.flush()
        res = subprocess.run(["/bin/sh", "-c", '. "$1" >/dev/null 2>&1 && set', "sh", f.name],
                             env={"PATH": "/nonexistent"}, capture_output=True, timeout=10, check=False)
    if res.returncode != 0:
        return {}
    return {k: v for k, v in _set_output(res.stdout.decode(errors="replace")).items() if k not in _SHELL_OWN}


# What sh itself sets (dash's `set` lists these with no file sourced).
_SHELL_OWN = {"IFS", "OPTIND", "PATH", "PPID", "PS1", "PS2", "PS4", "PWD"}


def _set_output(text: str) -> dict[str, str]:
    """dash's `set` listing: NAME='value' lines (a value may span lines), a ' inside written as '"'"'."""
    values: dict[str, str] = {}
    for m in re.finditer(r"""^([A-Za-z_][A-Za-z0-9_]*)=((?:'[^']*'|"'")*)$""", text, re.M):
        values[m.group(1)] = "".join(a or b for a, b in re.findall(r"'([^']*)'|\"(')\"", m.group(2)))
    return values


def read_file(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def write_atomic(path: str, text: str) -> None:
    directory = os.path.dirname(path) or "."
    mode = os.stat(path).st_mode & 0o7777 if os.path.exists(path) else 0o644
    fd, tmp = tempfile.mkstemp(prefix=".sysrc.", dir=directory)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def set_value(text: str, name: str, value: str) -> str:
    line = '%s="%s"' % (name, value.replace("\\", "\\\\").replace('"', '\\"'))
    lines = text.splitlines()
    idx = [i for i, existing in enumerate(lines) if (m := ASSIGN_RE.match(existing)) and m.group(1) == name]
    if idx:
        lines[idx[-1]] = line
    else:
        lines.append(line)
    return "\n".join(lines) + "\n"


def delete_value(text: str, name: str) -> str:
    kept = [ln for ln in text.splitlines() if not ((m := ASSIGN_RE.match(ln)) and m.group(1) == name)]
    return "\n".join(kept) + ("\n" if kept else "")


def _unknown(flags: set[str], name: str) -> int:
    if "-i" in flags:
        return 0
    err("sysrc: unknown variable '%s'" % name)
    return 1


def _delete(path: str, flags: set[str], name: str, text: str, current: dict[str, str]) -> int:
    if name not in current:
        return _unknown(flags, name)
    if not os.access(path, os.W_OK):
        err("sysrc: %s: Permission denied" % path)
        return 2
    write_atomic(path, delete_value(text, name))
    return 0


def _assign(path: str, flags: set[str], name: str, value: str, text: str, current: dict[str, str]) -> int:
    if (os.path.exists(path) and not os.access(path, os.W_OK)) or not os.access(os.path.dirname(path) or ".",
                                                                                   os.W_OK):
        err("sysrc: %s: Permission denied" % path)
        return 2
    write_atomic(path, set_value(text, name, value))
    if "-q" not in flags:
        out("%s: %s -> %s" % (name, current.get(name, ""), value))
    return 0


def _show(flags: set[str], name: str, current: dict[str, str]) -> int:
    if name not in current:
        return _unknown(flags, name)
    if "-n" in flags:
        out(current[name])
    elif "-e" in flags:
        out('%s="%s"' % (name, current[name]))
    else:
        out("%s: %s" % (name, current[name]))
    return 0


def _one(path: str, flags: set[str], arg: str) -> int:
    """One NAME, NAME=VALUE or (-x) NAME argument of sysrc: 0, 1, or 2 for "stop: permission denied"."""
    name, eq, value = arg.partition("=")
    if not NAME_RE.match(name):
        err("sysrc: %s: name contains characters not allowed in shell" % name)
        return 1
    text = read_file(path)
    current = parse(text)
    if "-c" in flags:
        return 1 if (eq and current.get(name) != value) or (not eq and name not in current) else 0
    if "-x" in flags:
        return _delete(path, flags, name, text, current)
    if eq:
        return _assign(path, flags, name, value, text, current)
    return _show(flags, name, current)


def sysrc(host: Host, argv: list[str]) -> int:
    try:
        opts, args = getopt.getopt(argv, "f:ncxiqe")
    except getopt.GetoptError as e:
        err("sysrc: %s" % e)
        return 1
    flags = {o for o, _ in opts}
    path = next((v for o, v in opts if o == "-f"), "/etc/rc.conf")
    if not args:
        err("usage: sysrc [-cdDeEFhinNqvx] [-f file] [--] name[[+|-]=value] ...")
        return 1
    rc = 0
    for arg in args:
        status = _one(path, flags, arg)
        if status == 2:  # permission denied ends sysrc at once
            return 1
        rc = rc or status
    return rc
