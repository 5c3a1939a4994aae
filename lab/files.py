"""The files a lab host is made of: its /etc overlay, /boot, sshd config, and the glue scripts."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys

from .freebsd.main import COMMANDS
from .layout import Layout
from .topology import USERS, HostSpec

EMULATOR_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "freebsd")
# What a fresh install does not have and carpweb (or a test) may add; `reset_host` removes it.
INSTALLED_LATER = ["/usr/local/etc/devd", "/usr/local/etc/newsyslog.conf.d", "/usr/local/libexec", "/var/log/carpweb",
                   "/var/log/messages", "/var/db/carpweb"]

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


def make_key(path: str, comment: str, store: str | None = None) -> None:
    """An ed25519 key pair at `path`: taken from `store` when it holds one by that name, else generated
    (and then kept in `store`), so a rebuilt lab can present the same keys as before."""
    kept = os.path.join(store, os.path.basename(path)) if store else None
    if kept and os.path.exists(kept) and os.path.exists(kept + ".pub"):
        shutil.copy2(kept, path)
        shutil.copy2(kept + ".pub", path + ".pub")
        return
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path], check=True,
                   capture_output=True)
    if kept and store:
        os.makedirs(store, mode=0o700, exist_ok=True)
        shutil.copy2(path, kept)
        shutil.copy2(path + ".pub", kept + ".pub")


def store_keys(lab: Layout, hosts: list[str]) -> None:
    """Keep a running lab's keys in its key store, where the store has none yet (a new data dir)."""
    if not lab.key_store:
        return
    pairs = [(lab.key_path, lab.key_store)] + [(os.path.join(lab.hostdir(h), "ssh_host_ed25519_key"),
                                                 os.path.join(lab.key_store, h)) for h in hosts]
    for key, store in pairs:
        kept = os.path.join(store, os.path.basename(key))
        if os.path.exists(key) and not os.path.exists(kept):
            os.makedirs(store, mode=0o700, exist_ok=True)
            shutil.copy2(key, kept)
            shutil.copy2(key + ".pub", kept + ".pub")


NATIVE_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "native")
RUN_PY = """import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from freebsd.main import run
name = sys.argv[1]
sys.argv = [name, *sys.argv[2:]]
run(name)
"""
# Without a C compiler: the same two programs as scripts (each command then starts Python: ~55 ms of CPU).
SESSION_SH = """#!/bin/sh
{ date -u +%Y-%m-%dT%H:%M:%S.%3NZ | tr -d '\\n'; printf ' %s ' "$USER"; \\
printf '%s' "${SSH_ORIGINAL_COMMAND:-<interactive shell>}" | tr '\\n' ' '; echo; } >> "$1"
shell=$(getent passwd "$USER" | cut -d: -f7); shell=${shell:-/bin/sh}
if [ -n "$SSH_ORIGINAL_COMMAND" ]; then exec "$shell" -c "$SSH_ORIGINAL_COMMAND"; fi
exec "$shell" -i
"""


def _compile(source: str, target: str, *defines: str) -> bool:
    """Build one of the lab's C programs; False when this machine has no C compiler (or the build failed)."""
    if not shutil.which("gcc"):
        return False
    res = subprocess.run(["gcc", "-O2", "-Wall", *defines, "-o", target + ".new", os.path.join(NATIVE_SRC, source)],
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        sys.stderr.write("lab: building %s failed, using the slow path:\n%s" % (source, res.stderr))
        return False
    os.chmod(target + ".new", 0o755)
    os.replace(target + ".new", target)  # a running host never sees a half-written program
    return True


def session_program(labdir: str) -> str:
    """sshd's ForceCommand: logs each command to the log given as its argument, then runs it with the user's login
    shell from the host's passwd, as sshd does (`shell -c command`)."""
    return os.path.join(labdir, "libexec", "carplab-session")


def install_emulator(labdir: str) -> None:
    """Copy the emulator into the lab and put one command per FreeBSD program in its bin directory: the small
    client of each host's emulator daemon (lab/native/emu.c, zygote.py) where gcc is there, else a script."""
    emu = os.path.join(labdir, "emu")
    shutil.copytree(EMULATOR_SRC, os.path.join(emu, "freebsd"), ignore=shutil.ignore_patterns("__pycache__"),
                    dirs_exist_ok=True)
    _write(os.path.join(emu, "run.py"), RUN_PY)
    subprocess.run([_python(), "-m", "compileall", "-q", emu], check=False)
    libexec = os.path.join(labdir, "libexec")
    os.makedirs(libexec, exist_ok=True)
    client = os.path.join(libexec, "carplab-emu")
    native = _compile("emu.c", client, '-DEMU_RUN="%s"' % os.path.join(emu, "run.py"), '-DPYTHON="%s"' % _python())
    if not _compile("session.c", session_program(labdir)):
        _write(session_program(labdir), SESSION_SH, 0o755)
    for name in [*COMMANDS, "carplab"]:
        path = os.path.join(labdir, "bin", name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        if native:
            os.symlink(client, path)
        else:
            _write(path, "#!%s -IS\nimport sys\nsys.path.insert(0, %r)\nfrom freebsd.main import run\nrun(%r)\n"
                   % (_python(), emu, name), 0o755)
    # FreeBSD's `tail -f`/`-F` is woken by kqueue as soon as the file grows; GNU tail cannot use inotify on the
    # lab's overlay /var and would poll once a second, so the lab's polls every 0.1 s (FreeBSD's timing).
    _write(os.path.join(labdir, "bin", "tail"), '#!/bin/sh\nexec /usr/bin/tail -s 0.1 "$@"\n', 0o755)
    os.chmod(labdir, 0o755)


def speaker_daemon(labdir: str) -> list[str]:
    """The command that runs one host's carp(4) speaker (lab/freebsd/speaker.py, inside the host's namespaces)."""
    emu = os.path.join(labdir, "emu")
    return [_python(), "-IS", "-c", "import sys; sys.path.insert(0, %r); from freebsd.speaker import main; main()"
            % emu]


def emulator_daemon(labdir: str) -> list[str]:
    """The command that runs one host's emulator daemon (inside the host's namespaces)."""
    return [_python(), "-IS", os.path.join(labdir, "emu", "freebsd", "zygote.py")]


def write_faults(hostdir: str, **faults: object) -> None:
    _write(os.path.join(hostdir, "faults.json"), json.dumps(faults))


def write_system_files(lab: Layout, spec: HostSpec) -> None:
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
        if stale.startswith(("vhid", "devd")):
            os.unlink(os.path.join(hd, "run", stale))


def write_accounts(lab: Layout, spec: HostSpec) -> None:
    """/etc/passwd, shadow, group, sudoers and doas.conf; each user's login shell from the spec (shell_of)."""
    _accounts(lab.hostdir(spec.name), spec)


def _accounts(hd: str, spec: HostSpec) -> None:
    upper = os.path.join(hd, "etc.upper")
    with open("/etc/passwd") as f:
        passwd = [ln for ln in f.read().splitlines() if ln.split(":")[0] not in USERS]
    with open("/etc/shadow") as f:
        shadow = [ln for ln in f.read().splitlines() if ln.split(":")[0] not in USERS]
    with open("/etc/group") as f:
        group = f.read().splitlines()
    for name, (uid, password, _) in USERS.items():
        home = "/root" if uid == 0 else os.path.join(hd, "home", name)
        passwd.append("%s:x:%d:%d:carplab %s:%s:%s" % (name, uid, uid, name, home, spec.shell_of(name)))
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


def write_host_tree(lab: Layout, spec: HostSpec) -> None:
    """Everything a host is made of, in its folder: identity, accounts, system files, sshd and the glue."""
    hd = lab.hostdir(spec.name)
    for sub in ("etc.upper/carplab", "etc.work", "boot", "run", "home", "local.upper", "local.work", "var.upper",
                "var.work"):
        os.makedirs(os.path.join(hd, sub), exist_ok=True)
    os.chmod(os.path.join(lab.dir, "hosts"), 0o755)
    os.chmod(hd, 0o755)
    write_identity(lab, spec)
    _accounts(hd, spec)
    write_system_files(lab, spec)
    write_faults(hd, linux=False)
    _write(os.path.join(hd, "commands.log"), "", 0o666)
    key = os.path.join(hd, "ssh_host_ed25519_key")
    make_key(key, "root@" + spec.name, os.path.join(lab.key_store, spec.name) if lab.key_store else None)
    _write(os.path.join(hd, "sshd_config"), _sshd_config(lab, spec, key))
    _write_holder_and_relay(lab, spec)
    _write_carp_hooks(hd)


def write_identity(lab: Layout, spec: HostSpec) -> None:
    hd = lab.hostdir(spec.name)
    cfg = {"name": spec.name, "address": spec.address, "prefix": lab.config.network.prefixlen,
           "subnet": lab.config.subnet, "gateway": lab.config.gateway, "iface": "em0",
           "version": spec.version, "hostdir": hd, "speaker": lab.config.speaker,
           "address6": spec.address6, "prefix6": lab.config.prefixlen6}
    _write(os.path.join(hd, "host.json"), json.dumps(cfg))
    _write(os.path.join(hd, "etc.upper", "carplab", "host.json"), json.dumps(cfg))
    _write(os.path.join(hd, "etc.upper", "hostname"), spec.name + "\n")
    _write(os.path.join(hd, "etc.upper", "hosts"), "127.0.0.1\tlocalhost\n%s\t%s\n" % (spec.address, spec.name))


def _sshd_config(lab: Layout, spec: HostSpec, key: str) -> str:
    return f"""\
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
ForceCommand {session_program(lab.dir)} {lab.hostdir(spec.name)}/commands.log
"""


def _write_holder_and_relay(lab: Layout, spec: HostSpec) -> None:
    """The namespace holder and the relay (the session wrapper is shared: `session_program`)."""
    hd = lab.hostdir(spec.name)
    _write(os.path.join(hd, "holder.sh"), f"""\
set -e
hostname {spec.name}
mount -t overlay overlay -o lowerdir=/etc,upperdir={hd}/etc.upper,workdir={hd}/etc.work /etc
mount --bind {hd}/boot /boot
# The host's own /usr/local (devd rules, scripts carpweb installs) and /var (logs, /var/db): they survive
# `lab reboot`, as a disk does.
mount -t overlay overlay -o lowerdir=/usr/local,upperdir={hd}/local.upper,workdir={hd}/local.work /usr/local
mount --bind {lab.dir}/bin /usr/local/sbin
mount --bind {lab.dir}/bin /usr/local/bin
mount -t overlay overlay -o lowerdir=/var,upperdir={hd}/var.upper,workdir={hd}/var.work /var
touch {hd}/run/holder.ready
exec sleep infinity
""")
    gw_ns = lab.ns("gateway")
    _write(os.path.join(hd, "relay.sh"), f"""\
#!/bin/sh
# One SSH connection: enter the lab at the gateway and reach the host's sshd across the switch.
# -t 0.05: stdin and stdout are one socket (the listening socat's EXEC), so a connection the host closes reaches
# the client only when this socat exits, -t after the close (0.5 s by default); on a real network it is at once.
if [ -f {hd}/run/netem ]; then
  exec nsenter --net=/run/netns/{gw_ns} {_python()} -IS {lab.dir}/emu/freebsd/delayrelay.py \
    {spec.address} 22 $(cat {hd}/run/netem)
fi
exec nsenter --net=/run/netns/{gw_ns} socat -t 0.05 STDIO TCP:{spec.address}:22,nodelay
""", 0o755)


def _write_carp_hooks(hd: str) -> None:
    """ucarp's up and down scripts: add or remove the VIP and record the state for `ifconfig`."""
    # The host's vhids report through the emulated kernel (its log line, devd); a rogue speaker only moves.
    _write(os.path.join(hd, "carp-up.sh"), f"""\
#!/bin/sh
# ucarp: this host became MASTER for vhid $3 ($2 on $1)
ip -4 addr add "$2/32" dev "$1" 2>/dev/null
case "$3" in [0-9]*) exec /usr/local/sbin/carplab carp-event "$3" MASTER;; esac
echo MASTER > {hd}/run/vhid$3.state
""", 0o755)
    _write(os.path.join(hd, "carp-down.sh"), f"""\
#!/bin/sh
ip -4 addr del "$2/32" dev "$1" 2>/dev/null
case "$3" in [0-9]*) exec /usr/local/sbin/carplab carp-event "$3" BACKUP;; esac
echo BACKUP > {hd}/run/vhid$3.state
""", 0o755)
