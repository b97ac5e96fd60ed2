"""Security policy: which MCP URLs a user may connect, and scrubbing secrets out of text.

Remote MCP URLs must be https and must resolve to public addresses, so a Slack user cannot
point the bot at its own network (SSRF). Hosts and CIDRs in ``MCP_ALLOWED_HOSTS`` are the
operator's exceptions: they may be private and may use plain http (local servers, tests).
The check runs when a connection is created or changed and again before every later connect,
after DNS resolution, covering IPv6 and hosts that change address. One operation checks once:
``judge_targets`` returns a ``PolicyVerdict`` that is handed along (the connection service's
plan carries it to the registry and the first session), so nothing resolves the same URL twice.

Stdio servers run on the bot's own machine, so a host a user types for one (a database URL
for the postgres card, say) is an SSRF path too: such values are the connection's
``endpoints`` and get the same address rule (``check_endpoint``), whatever their scheme.

"Public" is decided by ``SPECIAL_PURPOSE_BLOCKS`` (see there), not by ``ip_address().is_global``:
Python calls NAT64, 6to4 and other IPv4-embedding IPv6 forms global, so
``https://[64:ff9b::a9fe:a9fe]/`` would reach the metadata address through a NAT64 gateway.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from mcp_core.errors import PolicyError
from mcp_core.models import NewConnection, Transport

logger = logging.getLogger(__name__)

__all__ = [
    "DNS_TIMEOUT_S",
    "EMBEDDED_IPV4",
    "LOOPBACK_HOSTS",
    "SPECIAL_PURPOSE_BLOCKS",
    "NetworkTargets",
    "PolicyVerdict",
    "check_endpoint",
    "check_remote_url",
    "judge_targets",
    "scrub",
]

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
"""Hosts (as ``urlsplit(...).hostname`` gives them) that only this machine reaches: the one
place plain http is fine for a URL others are sent to (Slack's request URL, an OAuth redirect)."""

MIN_SECRET_CHARS = 4
"""Shorter values are too likely to appear by chance; scrubbing them would mangle text."""
DNS_TIMEOUT_S = 5.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

HOST_OVERRIDE_PARAMS = frozenset({"host", "hostaddr"})
"""Query parameters with which libpq-style clients connect somewhere other than the URL's host."""

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _blocks(*rows: tuple[str, str, bool]) -> tuple[tuple[IPNetwork, str, bool], ...]:
    return tuple((ipaddress.ip_network(cidr), name, reachable) for cidr, name, reachable in rows)


SPECIAL_PURPOSE_BLOCKS = _blocks(
    # The defaults: IPv4 unicast is reachable, IPv6 only inside 2000::/3.
    ("0.0.0.0/0", "IPv4 unicast", True),
    ("::/0", "not IPv6 global unicast", False),
    ("2000::/3", "IPv6 global unicast", True),
    # IANA IPv4 Special-Purpose Address Registry.
    ("0.0.0.0/8", '"this network"', False),
    ("0.0.0.0/32", '"this host on this network"', False),
    ("10.0.0.0/8", "private-use", False),
    ("100.64.0.0/10", "shared address space (CGN)", False),
    ("127.0.0.0/8", "loopback", False),
    ("169.254.0.0/16", "link local", False),
    ("172.16.0.0/12", "private-use", False),
    ("192.0.0.0/24", "IETF protocol assignments", False),
    ("192.0.0.0/29", "IPv4 service continuity prefix", False),
    ("192.0.0.8/32", "IPv4 dummy address", False),
    ("192.0.0.170/32", "NAT64/DNS64 discovery", False),
    ("192.0.0.171/32", "NAT64/DNS64 discovery", False),
    ("192.0.2.0/24", "documentation (TEST-NET-1)", False),
    ("192.31.196.0/24", "AS112-v4", True),
    ("192.52.193.0/24", "AMT", True),
    ("192.88.99.0/24", "deprecated 6to4 relay anycast", False),
    ("192.168.0.0/16", "private-use", False),
    ("192.175.48.0/24", "direct delegation AS112 service", True),
    ("198.18.0.0/15", "benchmarking", False),
    ("198.51.100.0/24", "documentation (TEST-NET-2)", False),
    ("203.0.113.0/24", "documentation (TEST-NET-3)", False),
    ("240.0.0.0/4", "reserved", False),
    ("255.255.255.255/32", "limited broadcast", False),
    # IANA IPv4 Multicast Address Space Registry (RFC 5771).
    ("224.0.0.0/4", "multicast", False),
    # IANA IPv6 Special-Purpose Address Registry (the IPv4-embedding rows are in EMBEDDED_IPV4).
    ("::1/128", "loopback", False),
    ("::/128", "unspecified", False),
    ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation", False),
    ("100::/64", "discard-only", False),
    ("100:0:0:1::/64", "dummy IPv6 prefix", False),
    ("2001::/23", "IETF protocol assignments", False),
    ("2001::/32", "Teredo", False),
    ("2001:2::/48", "benchmarking", False),
    ("2001:3::/32", "AMT", True),
    ("2001:4:112::/48", "AS112-v6", True),
    ("2001:10::/28", "deprecated ORCHID", False),
    ("2001:20::/28", "ORCHIDv2", True),
    ("2001:30::/28", "drone remote ID DETs", True),
    ("2001:db8::/32", "documentation", False),
    ("2620:4f:8000::/48", "direct delegation AS112 service", True),
    ("3fff::/20", "documentation", False),
    ("5f00::/16", "segment routing (SRv6) SIDs", False),
    ("fc00::/7", "unique-local", False),
    ("fe80::/10", "link-local unicast", False),
    # IANA IPv6 Address Space Registry: deprecated forms and multicast.
    ("::/96", "deprecated IPv4-compatible", False),
    ("::ffff:0:0:0/96", "IPv4-translated (SIIT)", False),
    ("fec0::/10", "deprecated site-local", False),
    ("ff00::/8", "multicast", False),
)
"""Where an address may point: (block, name, reachable); the most specific block containing
an address decides.

Rows come from the IANA IPv4 and IPv6 Special-Purpose Address Registries
(https://www.iana.org/assignments/iana-ipv4-special-registry/,
https://www.iana.org/assignments/iana-ipv6-special-registry/, as of 2025), ``reachable`` being
their "Globally Reachable" column ("N/A", as for Teredo, counts as false); multicast, the
deprecated IPv6 forms and the 2000::/3 boundary come from the IPv4 Multicast and IPv6 Address
Space registries. One deliberate difference: the single anycast service addresses the IPv4
and IPv6 registries list as reachable inside refused blocks (PCP 192.0.0.9 and 2001:1::1, TURN
192.0.0.10 and 2001:1::2, DNS-SD SRP 2001:1::3, the 6a44 relay 192.88.99.2) are left out, so
their block refuses them: they reach whichever such server is nearest the bot, often on its
own network, and never an MCP server."""


def _six_to_four(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFFFFFF)


def _low_32_bits(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)


EMBEDDED_IPV4: tuple[
    tuple[ipaddress.IPv6Network, str, Callable[[ipaddress.IPv6Address], ipaddress.IPv4Address]], ...
] = (
    (ipaddress.IPv6Network("::ffff:0:0/96"), "IPv4-mapped", _low_32_bits),
    (ipaddress.IPv6Network("64:ff9b::/96"), "NAT64 well-known prefix", _low_32_bits),
    (ipaddress.IPv6Network("2002::/16"), "6to4", _six_to_four),
)
"""IPv6 forms that carry an IPv4 address the packet ends up at (the IPv6 registry's
IPv4-mapped, IPv4-IPv6 translation and 6to4 rows): the embedded address is judged instead."""

_MOST_SPECIFIC_FIRST = sorted(SPECIAL_PURPOSE_BLOCKS, key=lambda row: -row[0].prefixlen)


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


@dataclass(frozen=True)
class NetworkTargets:
    """Every address a connection makes the bot reach: a remote server's URL, or the
    ``endpoints`` a stdio server will connect to."""

    remote_url: str | None = None
    endpoints: tuple[str, ...] = ()

    @classmethod
    def of(cls, connection: NewConnection) -> NetworkTargets:
        return cls.of_fields(connection.transport, connection.url, connection.typed_config.endpoints)

    @classmethod
    def of_fields(cls, transport: Transport, url: str | None, endpoints: Sequence[str]) -> NetworkTargets:
        if transport == "stdio":
            return cls(endpoints=tuple(endpoints))
        return cls(remote_url=url or "")


@dataclass(frozen=True)
class PolicyVerdict:
    """What the network policy said about every address of one connection."""

    targets: NetworkTargets
    refused: Mapping[str, PolicyError] = field(default_factory=dict)
    """Each refused address and why (the error says what to do); empty when all are allowed."""

    def covers(self, targets: NetworkTargets) -> bool:
        """True when exactly these targets were judged and all allowed: no need to ask again."""
        return not self.refused and targets == self.targets

    def raise_for_refusal(self) -> None:
        """Raises:
        PolicyError: the first refusal, if any.
        """
        for why in self.refused.values():
            raise why


async def judge_targets(
    targets: NetworkTargets, allowed_hosts: Sequence[str], *, timeout_s: float | None = None
) -> PolicyVerdict:
    """Check every address of ``targets`` (each with ``timeout_s``, if given; a form waits).

    Never raises ``PolicyError``: refusals are in the verdict, by address, so a form can show
    each on its own field.
    """
    checks = [(targets.remote_url, check_remote_url)] if targets.remote_url is not None else []
    checks += [(endpoint, check_endpoint) for endpoint in targets.endpoints]
    refused: dict[str, PolicyError] = {}
    for url, check in checks:
        try:
            await asyncio.wait_for(check(url, allowed_hosts), timeout_s)
        except PolicyError as exc:
            refused.setdefault(url, exc)
        except TimeoutError:
            refused.setdefault(url, PolicyError(CHECK_TOO_SLOW))
    return PolicyVerdict(targets, refused)


CHECK_TOO_SLOW = "Checking that URL took too long. Check the host name and try again."


def _require_public(host: str, addresses: Sequence[IPAddress]) -> None:
    for ip in addresses:
        refused = _refusal(ip)
        if refused is not None:
            logger.info("network policy refused %s: %s", host, refused)
            raise PolicyError(
                f"{host} points to a private or local address. An admin can allow it in MCP_ALLOWED_HOSTS."
            )


def _refusal(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public address (the block, through any embedding), or None if it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        for network, form, embedded in EMBEDDED_IPV4:
            if ip in network:
                refused = _refusal(embedded(ip))
                return None if refused is None else f"{ip} ({form}) embeds {refused}"
    network, name, reachable = next(
        row for row in _MOST_SPECIFIC_FIRST if ip.version == row[0].version and ip in row[0]
    )
    return None if reachable else f"{ip} in {network} ({name})"
