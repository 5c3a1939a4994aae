"""The files a lab host is made of: its /etc overlay, /boot, sshd config, and the glue scripts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

from .freebsd.main import COMMANDS
from .topology import USERS, HostSpec

if TYPE_CHECKING:
    from .world import Lab

EMULATOR_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "freebsd")

SYSCTL_CONF = """\
# $FreeBSD$
#
#  This file is read when going to multi-user and its contents piped thru
#  ``sysctl'' to adjust kernel values.  ``man 5 sysctl.conf'' for details.
#

# Uncomment this to prevent users from seeing information about processes that
# are being run under another UID.
#security.bsd.see_other_uids=0
"""


def _python() -> str:
    # The emulator is stdlib-only; the system interpreter is readable by every lab user.
    return "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else os.path.realpath(sys.executable)


def _write(path: str, text: str, mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def install_emulator(labdir: str) -> None:
    """Copy the emulator into the lab and put one command per FreeBSD program in its bin directory."""
    target = os.path.join(labdir, "emu", "freebsd")
    shutil.copytree(EMULATOR_SRC, target, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    subprocess.run([_python(), "-m", "compileall", "-q", target], check=False)
    for name in [*COMMANDS, "carplab"]:
        _write(os.path.join(labdir, "bin", name),
               "#!%s -IS\nimport sys\nsys.path.insert(0, %r)\nfrom freebsd.main import run\nrun(%r)\n"
               % (_python(), os.path.join(labdir, "emu"), name), 0o755)
    os.chmod(labdir, 0o755)


def write_faults(hostdir: str, **faults: bool) -> None:
    _write(os.path.join(hostdir, "faults.json"), json.dumps(faults))


def write_system_files(lab: Lab, spec: HostSpec) -> None:
    """/etc/rc.conf, /etc/sysctl.conf and /boot/loader.conf as a fresh FreeBSD install has them."""
    hd = lab.hostdir(spec.name)
    net = lab.config.network
    rc = ('hostname="%s"\nifconfig_em0="inet %s netmask %s"\n' % (spec.name, spec.address, net.netmask))
    if spec.role != "gateway":
        rc += 'defaultrouter="%s"\n' % lab.config.gateway
    rc += 'sshd_enable="YES"\ndumpdev="AUTO"\n'
    _write(os.path.join(hd, "etc.upper", "rc.conf"), rc)
    _write(os.path.join(hd, "etc.upper", "sysctl.conf"), SYSCTL_CONF)
    _write(os.path.join(hd, "boot", "loader.conf"), 'kern.geom.label.disk_ident.enable="0"\n')
    for stale in os.listdir(os.path.join(hd, "run")):
        if stale.startswith("vhid"):
            os.unlink(os.path.join(hd, "run", stale))


def _accounts(hd: str) -> None:
    upper = os.path.join(hd, "etc.upper")
    with open("/etc/passwd") as f:
        passwd = [ln for ln in f.read().splitlines() if ln.split(":")[0] not in USERS]
    with open("/etc/shadow") as f:
        shadow = [ln for ln in f.read().splitlines() if ln.split(":")[0] not in USERS]
    with open("/etc/group") as f:
        group = f.read().splitlines()
    for name, (uid, password, _) in USERS.items():
        home = "/root" if uid == 0 else os.path.join(hd, "home", name)
        passwd.append("%s:x:%d:%d:carplab %s:%s:/bin/sh" % (name, uid, uid, name, home))
        hashed = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password, capture_output=True,
                                text=True, check=True).stdout.strip()
        shadow.append("%s:%s:19000:0:99999:7:::" % (name, hashed))
        if uid:
            group.append("%s:x:%d:" % (name, uid))
            os.makedirs(home, exist_ok=True)
            os.chown(home, uid, uid)
    # root first, as in any passwd file
    passwd.sort(key=lambda ln: ln.split(":")[0] != "root")
    _write(os.path.join(upper, "passwd"), "\n".join(passwd) + "\n")
    _write(os.path.join(upper, "shadow"), "\n".join(shadow) + "\n", 0o640)
    _write(os.path.join(upper, "group"), "\n".join(group) + "\n")
    _write(os.path.join(upper, "sudoers.d", "carplab"),
           "Defaults lecture=never\ncarpadm ALL=(ALL) NOPASSWD: ALL\ncarpask ALL=(ALL) ALL\n", 0o440)
    path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    _write(os.path.join(upper, "doas.conf"),
           "permit nopass setenv { %s } carpadm as root\npermit setenv { %s } carpask as root\n" % (path, path),
           0o400)


def write_host_tree(lab: Lab, spec: HostSpec) -> None:
    hd = lab.hostdir(spec.name)
    for sub in ("etc.upper/carplab", "etc.work", "boot", "run", "home"):
        os.makedirs(os.path.join(hd, sub), exist_ok=True)
    os.chmod(os.path.join(lab.dir, "hosts"), 0o755)
    os.chmod(hd, 0o755)
    cfg = {"name": spec.name, "address": spec.address, "prefix": lab.config.network.prefixlen,
           "subnet": lab.config.subnet, "gateway": lab.config.gateway, "iface": "em0",
           "version": spec.version, "hostdir": hd}
    _write(os.path.join(hd, "host.json"), json.dumps(cfg))
    _write(os.path.join(hd, "etc.upper", "carplab", "host.json"), json.dumps(cfg))
    _write(os.path.join(hd, "etc.upper", "hostname"), spec.name + "\n")
    _write(os.path.join(hd, "etc.upper", "hosts"),
           "127.0.0.1\tlocalhost\n%s\t%s\n" % (spec.address, spec.name))
    _accounts(hd)
    write_system_files(lab, spec)
    write_faults(hd, linux=False)
    _write(os.path.join(hd, "commands.log"), "", 0o666)
    key = os.path.join(hd, "ssh_host_ed25519_key")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "root@" + spec.name, "-f", key],
                   check=True, capture_output=True)
    _write(os.path.join(hd, "sshd_config"), f"""\
ListenAddress {spec.address}:22
HostKey {key}
PidFile none
PermitRootLogin yes
PubkeyAuthentication yes
AuthorizedKeysFile {lab.dir}/keys/authorized_keys
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
MaxStartups 200:30:400
MaxSessions 64
LogLevel ERROR
ForceCommand {hd}/session.sh
""")
    # Every command an SSH session runs is logged (one line, timestamped) and then run by /bin/sh,
    # root's shell on FreeBSD: no bash, no .bashrc.
    _write(os.path.join(hd, "session.sh"), f"""\
#!/bin/sh
{{ date -u +%Y-%m-%dT%H:%M:%S.%3NZ | tr -d '\\n'; printf ' %s ' "$USER"; \
printf '%s' "${{SSH_ORIGINAL_COMMAND:-<interactive shell>}}" | tr '\\n' ' '; echo; }} >> {hd}/commands.log
if [ -n "$SSH_ORIGINAL_COMMAND" ]; then exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"; fi
exec /bin/sh -i
""", 0o755)
    _write(os.path.join(hd, "holder.sh"), f"""\
set -e
hostname {spec.name}
mount -t overlay overlay -o lowerdir=/etc,upperdir={hd}/etc.upper,workdir={hd}/etc.work /etc
mount --bind {hd}/boot /boot
mount --bind {lab.dir}/bin /usr/local/sbin
mount --bind {lab.dir}/bin /usr/local/bin
touch {hd}/run/holder.ready
exec sleep infinity
""")
    gw_ns = lab.ns("gateway")
    _write(os.path.join(hd, "relay.sh"), f"""\
#!/bin/sh
# One SSH connection: enter the lab at the gateway and reach the host's sshd across the switch.
if [ -f {hd}/run/netem ]; then
  exec nsenter --net=/run/netns/{gw_ns} {_python()} -IS {lab.dir}/emu/freebsd/delayrelay.py \
    {spec.address} 22 $(cat {hd}/run/netem)
fi
exec nsenter --net=/run/netns/{gw_ns} socat STDIO TCP:{spec.address}:22,nodelay
""", 0o755)
    _write(os.path.join(hd, "carp-up.sh"), f"""\
#!/bin/sh
# ucarp: this host became MASTER for vhid $3 ($2 on $1)
ip -4 addr add "$2/32" dev "$1" 2>/dev/null
echo MASTER > {hd}/run/vhid$3.state
echo "$(date -u +%FT%T.%3NZ) carp: $3@$1: BACKUP -> MASTER" >> {hd}/run/carp.log
""", 0o755)
    _write(os.path.join(hd, "carp-down.sh"), f"""\
#!/bin/sh
ip -4 addr del "$2/32" dev "$1" 2>/dev/null
echo BACKUP > {hd}/run/vhid$3.state
echo "$(date -u +%FT%T.%3NZ) carp: $3@$1: -> BACKUP" >> {hd}/run/carp.log
""", 0o755)
