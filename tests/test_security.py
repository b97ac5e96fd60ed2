"""The URL policy (SSRF guard) and secret scrubbing, without any network access.

Hosts are IP literals or ``localhost`` so nothing depends on outside DNS.
"""

from __future__ import annotations

import ipaddress

import pytest

from mcp_core.errors import PolicyError
from mcp_core.security import EMBEDDED_IPV4, SPECIAL_PURPOSE_BLOCKS, check_endpoint, check_remote_url, scrub

pytestmark = pytest.mark.anyio

PUBLIC_IP = "93.184.216.34"


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        (f"https://{PUBLIC_IP}/mcp", []),
        (f"https://{PUBLIC_IP}:8443/mcp?x=1", []),
        ("http://127.0.0.1:8080/mcp", ["127.0.0.1"]),
        ("http://localhost:8080/mcp", ["localhost"]),
        ("http://LOCALHOST:8080/mcp", ["localhost"]),
        ("http://10.1.2.3/mcp", ["10.0.0.0/8"]),
        ("https://192.168.7.9/mcp", ["192.168.0.0/16"]),
        ("http://[::1]:8080/mcp", ["::1"]),
        ("http://[fd00::5]/mcp", ["fd00::/8"]),
    ],
)
async def test_a_public_https_url_or_an_allowed_host_passes(url: str, allowed: list[str]) -> None:
    await check_remote_url(url, allowed)


@pytest.mark.parametrize(
    ("url", "allowed", "says"),
    [
        (f"http://{PUBLIC_IP}/mcp", ["127.0.0.1"], "must use https://"),
        ("http://10.1.2.3/mcp", [], "must use https://"),
        ("http://11.1.2.3/mcp", ["10.0.0.0/8"], "must use https://"),
        ("https://10.1.2.3/mcp", [], "private or local"),
        ("https://10.1.2.3/mcp", ["10.1.2.4"], "private or local"),
        ("https://127.0.0.1/mcp", [], "private or local"),
        ("https://localhost/mcp", ["127.0.0.2"], "private or local"),
        ("https://[::1]/mcp", [], "private or local"),
        ("https://[::ffff:127.0.0.1]/mcp", [], "private or local"),
        ("https://[fe80::1]/mcp", [], "private or local"),
        ("https://0.0.0.0/mcp", [], "private or local"),
        ("https://169.254.169.254/latest/meta-data", [], "private or local"),
        ("https://100.64.0.1/mcp", [], "private or local"),
        ("https://user:pw-9f1e@example.com/mcp", [], "credentials in the URL"),
        ("https://token@example.com/mcp", [], "credentials in the URL"),
        ("ftp://example.com/mcp", [], "https://example.com/mcp"),
        ("example.com/mcp", [], "https://example.com/mcp"),
        ("https:///mcp", [], "https://example.com/mcp"),
    ],
)
async def test_a_url_to_a_private_address_plain_http_or_with_credentials_is_refused(
    url: str, allowed: list[str], says: str
) -> None:
    with pytest.raises(PolicyError, match=says) as info:
        await check_remote_url(url, allowed)
    assert "pw-9f1e" not in str(info.value)


async def test_a_host_that_does_not_resolve_is_refused_with_a_hint() -> None:
    with pytest.raises(PolicyError, match="Could not resolve"):
        await check_remote_url("https://no-such-host.invalid/mcp", [])


# --- endpoints of local (stdio) servers ---------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        (f"postgresql://reader@{PUBLIC_IP}:5432/app", []),
        (f"postgresql://reader@{PUBLIC_IP}/app?sslmode=require", []),
        ("postgres://reader@127.0.0.1:5432/app", ["127.0.0.1"]),
        ("redis://10.0.0.7:6379/0", ["10.0.0.0/8"]),
        ("postgresql://localhost/app", ["localhost"]),
    ],
)
async def test_an_endpoint_on_a_public_or_allowed_host_passes_whatever_its_scheme(
    url: str, allowed: list[str]
) -> None:
    await check_endpoint(url, allowed)


@pytest.mark.parametrize(
    ("url", "allowed", "says"),
    [
        ("postgresql://reader@127.0.0.1:5432/app", [], "private or local"),
        ("postgresql://reader@localhost/app", [], "private or local"),
        ("postgresql://reader@[::1]/app", [], "private or local"),
        ("postgresql://reader@169.254.169.254/app", [], "private or local"),
        ("postgresql://reader@10.1.2.3/app", ["10.1.2.4"], "private or local"),
        (f"postgresql://reader@{PUBLIC_IP}/app?host=127.0.0.1", [], "another host"),
        (f"postgresql://reader@{PUBLIC_IP}/app?HostAddr=10.0.0.1", [], "another host"),
        (f"postgresql://reader:pw-9f1e@{PUBLIC_IP}/app", [], "password"),
        ("postgresql:///app", [], "needs a host"),
        ("127.0.0.1:5432", [], "needs a host"),
        (f"postgresql://{PUBLIC_IP}:99999/app", [], "not a valid URL"),
        ("postgresql://%2Fvar%2Frun%2Fpostgresql/app", [], "Could not resolve"),
    ],
)
async def test_an_endpoint_inside_the_bots_network_or_naming_another_host_is_refused(
    url: str, allowed: list[str], says: str
) -> None:
    with pytest.raises(PolicyError, match=says) as info:
        await check_endpoint(url, allowed)
    assert "pw-9f1e" not in str(info.value)


def test_scrub_replaces_every_secret_longest_first_and_leaves_short_values_alone() -> None:
    text = "token abcd1234 and abcd1234-extra and id 42"

    scrubbed = scrub(text, ["abcd1234", "abcd1234-extra", "42"])

    assert scrubbed == "token [redacted] and [redacted] and id 42"


# --- which addresses are public: the special-purpose address table ------------------------------

REFUSED, ALLOWED = False, True
ADDRESS_VERDICTS = [
    # IPv4 unicast and the IANA IPv4 Special-Purpose Address Registry, one address per block.
    (PUBLIC_IP, ALLOWED),
    ("8.8.8.8", ALLOWED),
    ("0.1.2.3", REFUSED),
    ("0.0.0.0", REFUSED),
    ("10.1.2.3", REFUSED),
    ("100.64.0.1", REFUSED),
    ("127.0.0.1", REFUSED),
    ("169.254.169.254", REFUSED),
    ("172.16.5.4", REFUSED),
    ("172.32.0.1", ALLOWED),
    ("192.0.0.200", REFUSED),
    ("192.0.0.1", REFUSED),
    ("192.0.0.8", REFUSED),
    ("192.0.0.9", REFUSED),
    ("192.0.0.10", REFUSED),
    ("192.0.0.170", REFUSED),
    ("192.0.0.171", REFUSED),
    ("192.0.2.1", REFUSED),
    ("192.31.196.1", ALLOWED),
    ("192.52.193.1", ALLOWED),
    ("192.88.99.1", REFUSED),
    ("192.88.99.2", REFUSED),
    ("192.168.1.1", REFUSED),
    ("192.175.48.1", ALLOWED),
    ("198.19.0.1", REFUSED),
    ("198.51.100.7", REFUSED),
    ("203.0.113.9", REFUSED),
    ("240.0.0.1", REFUSED),
    ("255.255.255.255", REFUSED),
    ("224.0.0.251", REFUSED),
    ("239.255.255.250", REFUSED),
    # IPv6: only 2000::/3 global unicast, minus the IANA IPv6 Special-Purpose Address Registry.
    ("2606:4700:4700::1111", ALLOWED),
    ("2001:4860:4860::8888", ALLOWED),
    ("4000::1", REFUSED),
    ("1000::1", REFUSED),
    ("::1", REFUSED),
    ("::", REFUSED),
    ("64:ff9b:1::a9fe:a9fe", REFUSED),
    ("64:ff9b:1::808:808", REFUSED),
    ("100::1", REFUSED),
    ("100:0:0:1::1", REFUSED),
    ("2001:100::1", REFUSED),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", REFUSED),
    ("2001:1::1", REFUSED),
    ("2001:1::2", REFUSED),
    ("2001:1::3", REFUSED),
    ("2001:2::1", REFUSED),
    ("2001:3::1", ALLOWED),
    ("2001:4:112::1", ALLOWED),
    ("2001:10::1", REFUSED),
    ("2001:20::1", ALLOWED),
    ("2001:30::1", ALLOWED),
    ("2001:db8::1", REFUSED),
    ("2620:4f:8000::1", ALLOWED),
    ("3fff::1", REFUSED),
    ("5f00::1", REFUSED),
    ("fc00::1", REFUSED),
    ("fd00::5", REFUSED),
    ("fe80::1", REFUSED),
    ("fe80::1%25eth0", REFUSED),
    ("::7f00:1", REFUSED),
    ("::808:808", REFUSED),
    ("::ffff:0:7f00:1", REFUSED),
    ("::ffff:0:808:808", REFUSED),
    ("fec0::1", REFUSED),
    ("ff02::1", REFUSED),
    ("ff0e::1", REFUSED),
    # IPv6 forms that embed an IPv4 address are judged by that address.
    ("::ffff:127.0.0.1", REFUSED),
    ("::ffff:169.254.169.254", REFUSED),
    ("::ffff:8.8.8.8", ALLOWED),
    ("64:ff9b::a9fe:a9fe", REFUSED),
    ("64:ff9b::7f00:1", REFUSED),
    ("64:ff9b::a00:1", REFUSED),
    ("64:ff9b::808:808", ALLOWED),
    ("2002:0a00:0001::1", REFUSED),
    ("2002:a9fe:a9fe::1", REFUSED),
    ("2002:c058:6301::1", REFUSED),
    ("2002:0808:0808::1", ALLOWED),
]
VERDICT_IDS = [f"{address}-{'allowed' if public else 'refused'}" for address, public in ADDRESS_VERDICTS]


def _in_brackets(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _most_specific_block(address: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    ip = ipaddress.ip_address(address.replace("%25", "%"))
    return max(
        (net for net, _name, _reachable in SPECIAL_PURPOSE_BLOCKS if net.version == ip.version and ip in net),
        key=lambda net: net.prefixlen,
    )


@pytest.mark.parametrize(("address", "public"), ADDRESS_VERDICTS, ids=VERDICT_IDS)
async def test_a_remote_url_passes_only_if_its_address_is_global_unicast(address: str, public: bool) -> None:
    url = f"https://{_in_brackets(address)}/mcp"

    if public:
        await check_remote_url(url, [])
    else:
        with pytest.raises(PolicyError, match=r"points to a private or local address\. An admin can allow"):
            await check_remote_url(url, [])


@pytest.mark.parametrize(("address", "public"), ADDRESS_VERDICTS, ids=VERDICT_IDS)
async def test_an_endpoint_passes_only_if_its_address_is_global_unicast(address: str, public: bool) -> None:
    url = f"postgresql://{_in_brackets(address)}:5432/db"

    if public:
        await check_endpoint(url, [])
    else:
        with pytest.raises(PolicyError, match="private or local"):
            await check_endpoint(url, [])


def test_every_block_of_the_address_table_is_tested_with_an_address_inside_it() -> None:
    tested = {_most_specific_block(address) for address, _public in ADDRESS_VERDICTS}
    embedded = {net for net, _form, _decode in EMBEDDED_IPV4}

    assert {net for net, _name, _reachable in SPECIAL_PURPOSE_BLOCKS} - tested == set()
    assert {
        net
        for net in embedded
        if not any(ipaddress.ip_address(a) in net for a, _public in ADDRESS_VERDICTS if ":" in a)
    } == set()


def test_every_block_of_the_address_table_is_tested_with_the_verdict_of_its_row() -> None:
    reachable = {net: ok for net, _name, ok in SPECIAL_PURPOSE_BLOCKS}
    embedded = tuple(net for net, _form, _decode in EMBEDDED_IPV4)

    for address, public in ADDRESS_VERDICTS:
        if not any(ipaddress.ip_address(address.replace("%25", "%")) in net for net in embedded):
            assert reachable[_most_specific_block(address)] is public, address


@pytest.mark.parametrize(
    "host",
    ["0x7f000001", "2130706433", "127.1", "0251.0376.0251.0376", "0xa9fea9fe", "10.1"],
)
async def test_a_numeric_host_spelling_is_judged_by_the_address_it_resolves_to(host: str) -> None:
    with pytest.raises(PolicyError, match=f"{host} points to a private or local address"):
        await check_remote_url(f"https://{host}/mcp", [])
    with pytest.raises(PolicyError, match=f"{host} points to a private or local address"):
        await check_endpoint(f"postgresql://{host}:5432/db", [])


@pytest.mark.parametrize("host", ["0x08080808", "134744072"])
async def test_a_numeric_host_spelling_of_a_public_address_passes(host: str) -> None:
    await check_remote_url(f"https://{host}/mcp", [])
    await check_endpoint(f"postgresql://{host}:5432/db", [])


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://[64:ff9b::a9fe:a9fe]/mcp", ["64:ff9b::/96"]),
        ("http://[2002:0a00:0001::1]/mcp", ["2002:a00:1::1"]),
        ("https://[fec0::1]/mcp", ["fec0::/10"]),
        ("https://0xa9fea9fe/mcp", ["0xa9fea9fe"]),
        ("https://0xa9fea9fe/mcp", ["169.254.0.0/16"]),
    ],
)
async def test_an_admin_can_still_allow_any_refused_address_in_mcp_allowed_hosts(
    url: str, allowed: list[str]
) -> None:
    await check_remote_url(url, allowed)
    await check_endpoint(url, allowed)
