"""Security policy: which MCP URLs a user may connect, and scrubbing secrets out of text.

Remote MCP URLs must be https and must resolve to public addresses, so a Slack user cannot
point the bot at its own network (SSRF). Hosts and CIDRs in ``MCP_ALLOWED_HOSTS`` are the
operator's exceptions: they may be private and may use plain http (local servers, tests).
The check runs when a connection is created and again before every connect, after DNS
resolution, covering IPv6 and hosts that change address.

Stdio servers run on the bot's own machine, so a host a user types for one (a database URL
for the postgres card, say) is an SSRF path too: such values are the connection's
``endpoints`` and get the same address rule (``check_endpoint``), whatever their scheme.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from urllib.parse import parse_qsl, urlsplit

from mcp_core.errors import PolicyError

__all__ = ["DNS_TIMEOUT_S", "check_endpoint", "check_remote_url", "scrub"]

MIN_SECRET_CHARS = 4
"""Shorter values are too likely to appear by chance; scrubbing them would mangle text."""
DNS_TIMEOUT_S = 5.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

HOST_OVERRIDE_PARAMS = frozenset({"host", "hostaddr"})
"""Query parameters with which libpq-style clients connect somewhere other than the URL's host."""


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret in ``text`` with ``[redacted]``."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= MIN_SECRET_CHARS:
            text = text.replace(secret, "[redacted]")
    return text


def _in_allowed(host: str, addresses: Sequence[IPAddress], allowed: Sequence[str]) -> bool:
    host = host.lower().strip("[]")
    names = {entry for entry in allowed if "/" not in entry}
    if host in names:
        return True
    networks = [ipaddress.ip_network(entry, strict=False) for entry in allowed if "/" in entry]
    networks += [ipaddress.ip_network(n) for n in names if _is_ip(n)]
    return bool(addresses) and all(any(ip in net for net in networks) for ip in addresses)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


async def _resolve(host: str) -> list[IPAddress]:
    literal = host.strip("[]")
    if _is_ip(literal):
        return [ipaddress.ip_address(literal)]
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), DNS_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        raise PolicyError(f"Could not resolve {host}. Check the URL for typos.") from exc
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


async def check_remote_url(url: str, allowed_hosts: Sequence[str]) -> None:
    """Refuse URLs a Slack user must not make the bot fetch.

    Raises:
        PolicyError: with a message saying what is wrong and what to do.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise PolicyError("MCP server URLs look like https://example.com/mcp.")
    if parts.username or parts.password:
        raise PolicyError("Don't put credentials in the URL; use the token field instead.")
    host = parts.hostname
    addresses = await _resolve(host)
    if _in_allowed(host, addresses, allowed_hosts):
        return
    if parts.scheme != "https":
        raise PolicyError(
            f"{host} must use https://. Only hosts an admin lists in MCP_ALLOWED_HOSTS may use http."
        )
    _require_public(host, addresses)


async def check_endpoint(url: str, allowed_hosts: Sequence[str]) -> None:
    """Refuse a URL a local (stdio) server would connect to if it points inside the bot's network.

    Any scheme (``postgresql://``, ``redis://``…) is accepted; the host must resolve to public
    addresses unless ``allowed_hosts`` lists it. Query parameters that name another host are refused.

    Raises:
        PolicyError: with a message saying what is wrong and what to do.
    """
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise PolicyError("That address is not a valid URL.") from None
    if not parts.scheme or not host:
        raise PolicyError("That address needs a host, like scheme://host:port/name.")
    if parts.password:
        raise PolicyError("Don't put a password in the address; use the password field instead.")
    if any(key.lower() in HOST_OVERRIDE_PARAMS for key, _ in parse_qsl(parts.query, keep_blank_values=True)):
        raise PolicyError("The address may not name another host in its query (host=, hostaddr=).")
    addresses = await _resolve(host)
    if not _in_allowed(host, addresses, allowed_hosts):
        _require_public(host, addresses)


def _require_public(host: str, addresses: Sequence[IPAddress]) -> None:
    for ip in addresses:
        if not ip.is_global:
            raise PolicyError(
                f"{host} points to a private or local address. An admin can allow it in MCP_ALLOWED_HOSTS."
            )
