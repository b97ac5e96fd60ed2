"""The URL policy (SSRF guard) and secret scrubbing, without any network access.

Hosts are IP literals or ``localhost`` so nothing depends on outside DNS.
"""

from __future__ import annotations

import pytest

from mcp_core.errors import PolicyError
from mcp_core.security import check_endpoint, check_remote_url, scrub

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
