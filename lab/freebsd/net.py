"""route, netstat and ping with FreeBSD's flags and output, answered by the namespace's real network."""

from __future__ import annotations

import getopt
import re
import subprocess
import sys

from . import carp
from .state import Host, err, out


def _default_gateway() -> str | None:
    res = subprocess.run(["ip", "-4", "route", "show", "default"], capture_output=True, text=True, check=False)
    m = re.search(r"default via (\S+)", res.stdout)
    return m.group(1) if m else None


def route(host: Host, argv: list[str]) -> int:
    args = [a for a in argv if a != "-n"]
    if args[:1] != ["get"] or len(args) != 2:
        err("usage: route [-46dnqtv] command [[modifiers] args]")
        return 64
    if args[1] != "default":
        err("route: writing to routing socket: No such process")
        return 1
    gw = _default_gateway()
    if gw is None:
        out("   route to: default")
        err("route: route has not been found")
        return 1
    for line in ("   route to: default", "destination: default", "       mask: default",
                 "    gateway: %s" % gw, "        fib: 0", "  interface: %s" % host.cfg["iface"],
                 "      flags: <UP,GATEWAY,DONE,STATIC>",
                 " recvpipe  sendpipe  ssthresh  rtt,msec    mtu        weight    expire",
                 "       0         0         0         0      1500         1         0 "):
        out(line)
    return 0


def netstat(host: Host, argv: list[str]) -> int:
    flags = "".join(a.lstrip("-") for a in argv if a.startswith("-"))
    if "r" not in flags:
        err("netstat: only -r is emulated in the carpweb lab")
        return 1
    iface = host.cfg["iface"]
    net = "%s/%d" % (host.cfg["subnet"].split("/")[0], host.cfg["prefix"])
    out("Routing tables\n\nInternet:")
    out("%-18s %-18s %-9s %10s" % ("Destination", "Gateway", "Flags", "Netif Expire"))
    gw = _default_gateway() if carp.link_up(host) else None
    if gw:
        out("%-18s %-18s %-9s %10s" % ("default", gw, "UGS", iface))
    out("%-18s %-18s %-9s %10s" % ("127.0.0.1", "link#2", "UH", "lo0"))
    if carp.link_up(host):
        out("%-18s %-18s %-9s %10s" % (net, "link#1", "U", iface))
    out("%-18s %-18s %-9s %10s" % (host.cfg["address"], "link#2", "UHS", "lo0"))
    return 0


PING_USAGE = ("usage: ping [-AaDdfHnoQqRrv] [-C pcp] [-c count] [-G sweepmaxsize] [-g sweepminsize]\n"
              "            [-h sweepincrsize] [-i wait] [-l preload] [-M mask | time] [-m ttl]\n"
              "            [-p pattern] [-S src_addr] [-s packetsize] [-t timeout]\n"
              "            [-W waittime] [-z tos] IPv4-host")


def _linux_ping(o: dict[str, str], target: str) -> list[str]:
    """FreeBSD's ping options as Linux ping's: -t is the whole run's timeout (s), -W the wait per reply (ms)."""
    cmd = ["/bin/ping", "-n", "-c", o.get("-c", "1000000")]
    if "-t" in o:
        cmd += ["-w", o["-t"]]
    if "-W" in o:
        cmd += ["-W", str(max(1, int(o["-W"]) // 1000))]
    for flag, linux in (("-i", "-i"), ("-s", "-s"), ("-S", "-I")):
        if flag in o:
            cmd += [linux, o[flag]]
    return cmd + [target]


def _relay(proc: subprocess.Popen[str], o: dict[str, str], target: str, size: str) -> tuple[list[str], list[float]]:
    """Print each reply as FreeBSD does, as it comes (a drill's prober reads them live)."""
    seen: list[str] = []
    times: list[float] = []
    for line in proc.stdout or []:
        seen.append(line)
        if line.startswith("PING"):
            out("PING %s (%s): %s data bytes" % (target, target, size))
        m = re.search(r"from (\S+): icmp_seq=(\d+) ttl=(\d+) time=([\d.]+) ms", line)
        if m:
            times.append(float(m.group(4)))
            if "-q" not in o:
                out("%d bytes from %s: icmp_seq=%d ttl=%s time=%.3f ms" % (
                    int(size) + 8, m.group(1).rstrip(":"), int(m.group(2)) - 1, m.group(3), float(m.group(4))))
        sys.stdout.flush()
    return seen, times


PING6_USAGE = ("usage: ping6 [-DdfHnNoqrRtvwW] [-a addrtype] [-b bufsiz] [-c count] [-g gateway]\n"
               "             [-h hoplimit] [-I interface] [-i wait] [-l preload] [-p pattern]\n"
               "             [-S sourceaddr] [-s packetsize] [-x waittime] [-X timeout] [hops ...] host")


def ping6(host: Host, argv: list[str]) -> int:
    """FreeBSD's ping6 (13.x, and a link to `ping -6` on 14.x): -X is the whole run's timeout in seconds."""
    try:
        opts, args = getopt.getopt(argv, "c:X:x:i:s:qnS:")
    except getopt.GetoptError:
        err(PING6_USAGE)
        return 64
    if len(args) != 1 or ":" not in args[0]:
        err(PING6_USAGE if len(args) != 1 else "ping6: cannot resolve %s: hostname nor servname provided" % args[0])
        return 64 if len(args) != 1 else 68
    o = dict(opts)
    if "-X" in o:
        o["-t"] = o.pop("-X")
    return _ping(o, args[0])


def ping(host: Host, argv: list[str]) -> int:
    try:
        opts, args = getopt.getopt(argv, "c:t:W:i:s:qnS:")
    except getopt.GetoptError:
        err(PING_USAGE)
        return 64
    if len(args) != 1:
        err(PING_USAGE)
        return 64
    return _ping(dict(opts), args[0])


def _ping(o: dict[str, str], target: str) -> int:
    size = o.get("-s", "56")
    # The drill's probe is a measuring instrument: a ping starved on a busy machine (a CI run on two cores) sends
    # nothing for seconds and numbers on without a gap, so an outage in that time does not show. It runs ahead of
    # the machine's own work, as the lab's carp(4) speakers do.
    proc = subprocess.Popen(["nice", "-n", "-10", *_linux_ping(o, target)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen, times = _relay(proc, o, target, size)
    stderr = proc.stderr.read() if proc.stderr else ""
    if proc.wait() not in (0, 1):
        msg = stderr.strip().split(": ", 1)[-1] or "cannot resolve %s: Unknown host" % target
        err("ping: %s" % msg)
        return 68 if "resolve" in msg or "Name or service" in msg else 2
    stats = re.search(r"(\d+) packets transmitted, (\d+) received", "".join(seen))
    sent, got = (int(stats.group(1)), int(stats.group(2))) if stats else (0, 0)
    out("\n--- %s ping statistics ---" % target)
    loss = 100.0 * (sent - got) / sent if sent else 0.0
    out("%d packets transmitted, %d packets received, %.1f%% packet loss" % (sent, got, loss))
    if times:
        avg = sum(times) / len(times)
        std = (sum((t - avg) ** 2 for t in times) / len(times)) ** 0.5
        out("round-trip min/avg/max/stddev = %.3f/%.3f/%.3f/%.3f ms" % (min(times), avg, max(times), std))
    return 0 if got else 2
