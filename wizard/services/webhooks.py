"""One webhook POST, held inside carpweb's trust boundary.

A webhook URL is typed by an operator, so it must not become a way into the network carpweb sits in:
- the host is resolved here, every address it resolves to must be public (or inside a network listed in
  CARPWEB_WEBHOOK_ALLOWED_NETWORKS), and the connection goes to that checked address (so a DNS answer that
  changes between the check and the connection, "rebinding", cannot slip through); TLS still verifies the name;
- no redirect is followed (a redirect would carry the secret header to wherever it points);
- header names come from an allow-list shape (never Host, Content-*, hop-by-hop headers);
- the whole attempt, name resolution included, has one deadline; a watchdog closes the connection when it passes;
- every failure is one plain sentence: what the page shows an operator is never a port scanner's answer.

httpx does the HTTP (and TLS); this module only decides where it may connect.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import httpx
from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Hop-by-hop and framing headers, and those httpx sets itself: a webhook's secret header may be none of these.
FORBIDDEN_HEADERS = frozenset({
    "host", "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
    "trailer", "trailers", "transfer-encoding", "upgrade", "expect", "cookie", "user-agent", "accept-encoding"})
_RESOLVER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="webhook-dns")


class WebhookRefused(Exception):
    """The attempt did not get through; the message is the sentence the Notifications page shows."""


def header_name_problem(name: str) -> str | None:
    """Why a header name cannot carry a webhook's secret, or None when it can."""
    lowered = name.lower()
    if not name or len(name) > 100 or not all(c.isalnum() or c == "-" for c in name) or not name[0].isalpha():
        return "A header name is letters, digits and dashes. It starts with a letter (e.g. Authorization)."
    if lowered in FORBIDDEN_HEADERS or lowered.startswith(("content-", "proxy-", "sec-")):
        return (f"{name} is set by carpweb or by HTTP itself and cannot carry a secret; use Authorization or an "
                "X-… header.")
    return None


def allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(n.strip(), strict=False)
            for n in settings.CARPWEB_WEBHOOK_ALLOWED_NETWORKS.split(",") if n.strip()]


def address_problem(ip: IPAddress) -> str | None:
    """Why carpweb will not connect to `ip`, or None. Only global (public) addresses, unless allowed."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in allowed_networks()):
        return None
    if ip.is_global and not ip.is_multicast:
        return None
    kind = ("an unspecified" if ip.is_unspecified else "a loopback" if ip.is_loopback
            else "a link-local (cloud metadata)" if ip.is_link_local
            else "a multicast" if ip.is_multicast else "a private" if ip.is_private else "a non-public")
    return (f"{ip} is {kind} address; webhooks go to public addresses only, unless its network is listed in "
            "CARPWEB_WEBHOOK_ALLOWED_NETWORKS")


def literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _resolve(host: str, port: int, seconds: float) -> list[IPAddress]:
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    future = _RESOLVER.submit(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=max(0.1, seconds))
    except FutureTimeout:
        raise WebhookRefused(f"could not resolve {host} in time") from None
    except OSError:
        raise WebhookRefused(f"could not resolve {host}") from None
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


def checked_address(host: str, port: int, seconds: float) -> IPAddress:
    """The address to connect to: every address the name resolves to must be allowed (a name that also points
    inside is refused whole), and the first one is used."""
    addresses = _resolve(host, port, seconds)
    for ip in addresses:
        problem = address_problem(ip)
        if problem:
            raise WebhookRefused(f"refused: {problem}" if literal_address(host) else
                                 f"refused: {host} resolves to {problem}")
    if not addresses:
        raise WebhookRefused(f"could not resolve {host}")
    return addresses[0]


def post(url: str, body: dict[str, Any], headers: dict[str, str], deadline_seconds: float) -> None:
    """POST `body` as JSON to `url` within `deadline_seconds` overall; raises WebhookRefused unless a 2xx came."""
    started = time.monotonic()
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        raise WebhookRefused("the webhook URL is not a valid http(s) URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise WebhookRefused("the webhook URL is not a valid http(s) URL")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    ip = checked_address(parsed.host, port, deadline_seconds)
    for name in headers:
        if header_name_problem(name):
            raise WebhookRefused(f"the header {name!r} is not allowed")
    remaining = deadline_seconds - (time.monotonic() - started)
    if remaining <= 0:
        raise WebhookRefused(f"no answer within {deadline_seconds:g} s")
    host_header = parsed.host if parsed.port is None else f"{parsed.host}:{parsed.port}"
    target = parsed.copy_with(host=str(ip))
    request_headers = {"Content-Type": "application/json", "User-Agent": "carpweb", **headers, "Host": host_header}
    client = httpx.Client(timeout=httpx.Timeout(remaining), follow_redirects=False, trust_env=False)
    watchdog = threading.Timer(remaining, client.close)  # closes the socket under a read that would go on
    watchdog.daemon = True
    watchdog.start()
    try:
        # TLS checks the certificate against the name, while the connection goes to the address checked above.
        with client.stream("POST", target, content=json.dumps(body).encode(), headers=request_headers,
                           extensions={"sni_hostname": parsed.host}) as response:
            status = response.status_code
    except httpx.HTTPError:
        timed_out = time.monotonic() - started >= deadline_seconds - 0.05
        raise WebhookRefused(f"no answer within {deadline_seconds:g} s" if timed_out
                             else "could not deliver to the webhook (connection or TLS failed)") from None
    finally:
        watchdog.cancel()
        client.close()
    if 300 <= status < 400:
        raise WebhookRefused(f"the webhook answered {status} (a redirect, which carpweb does not follow)")
    if not 200 <= status < 300:
        raise WebhookRefused(f"the webhook answered {status}")
