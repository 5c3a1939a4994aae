"""devd(8) as far as CARP needs it: `notify` rules from /usr/local/etc/devd/*.conf, loaded when devd starts
(boot, `service devd restart`), and run on every CARP state change with devd's variables; and service(8)."""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
from typing import Any

from .state import Host, err, out

RULES = "/usr/local/etc/devd/*.conf"
NOTIFY = re.compile(r"notify\s+(\d+)\s*\{(.*?)\}\s*;", re.S)
MATCH = re.compile(r'match\s+"(\w+)"\s+"([^"]*)"\s*;')
ACTION = re.compile(r'action\s+"((?:[^"\\]|\\.)*)"\s*;')
VARIABLE = re.compile(r"\$(\w+)")


def parse(text: str) -> list[dict[str, Any]]:
    """The notify rules of a devd configuration (comments removed)."""
    text = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    rules = []
    for priority, body in NOTIFY.findall(text):
        action = ACTION.search(body)
        if action:
            rules.append({"priority": int(priority), "match": dict(MATCH.findall(body)),
                          "action": action.group(1).replace('\\"', '"')})
    return rules


def _loaded(host: Host) -> str:
    return os.path.join(host.dir, "run", "devd.json")


def load(host: Host) -> int:
    """What devd does when it starts: read every rule file; returns how many notify rules it loaded."""
    rules = []
    for path in sorted(glob.glob(RULES)):
        with open(path) as f:
            rules += parse(f.read())
    with open(_loaded(host), "w") as f:
        json.dump(rules, f)
    with open(os.path.join(host.dir, "run", "devd.log"), "a") as f:
        f.write("started with %d notify rules\n" % len(rules))
    return len(rules)


def notify(host: Host, system: str, subsystem: str, kind: str) -> None:
    """An event reaches devd: run the actions of the loaded rules that match, highest priority first."""
    try:
        with open(_loaded(host)) as f:
            rules = json.load(f)
    except FileNotFoundError:
        return
    values = {"system": system, "subsystem": subsystem, "type": kind}
    for rule in sorted(rules, key=lambda r: -r["priority"]):
        if all(key in values and re.fullmatch(regex, values[key]) for key, regex in rule["match"].items()):
            command = VARIABLE.sub(lambda m: values.get(m.group(1), ""), rule["action"])
            subprocess.run(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=30, check=False)


def service(host: Host, argv: list[str]) -> int:
    """service(8) for devd: restart (or start, reload) reads the rules again; status says it runs."""
    if len(argv) != 2:
        err("usage: service [-j <jail name or id>] -e | -R | -l | -r | -v | <rc.d script> start|stop|etc.")
        return 1
    name, verb = argv
    if name != "devd":
        err("%s does not exist in /etc/rc.d or the local startup" % name)
        err("directories (/usr/local/etc/rc.d), or is not executable")
        return 1
    if verb in ("restart", "start", "reload", "onerestart"):
        if verb in ("restart", "onerestart"):
            out("Stopping devd.")
        load(host)
        out("Starting devd.")
        return 0
    if verb == "status":
        out("devd is running as pid %d." % (os.getpid() % 30000 + 400))
        return 0
    err("/etc/rc.d/devd: unknown directive '%s'." % verb)
    return 1
