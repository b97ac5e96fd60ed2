"""Master keys: parsing CREDENTIAL_KEYS, and the key file generated on the first start."""

from __future__ import annotations

import base64
import logging
import os
import stat

import pytest
from pydantic import SecretStr

from mcp_core.credentials import describe_keys, load_keyring, load_or_create_keyring, parse_keyring
from mcp_core.credentials._crypto import aad_for, decrypt, encrypt
from mcp_core.credentials.keys import key_file_path
from mcp_core.errors import ConfigError
from tests.support.registry import make_settings

from .conftest import KEY_1, KEY_2

SHORT_KEY = base64.b64encode(os.urandom(16)).decode()


# --- CREDENTIAL_KEYS ----------------------------------------------------------------------------


def test_the_first_key_is_primary_and_every_key_is_kept() -> None:
    keyring = parse_keyring(f" k2:{KEY_2} , k1:{KEY_1} ")

    assert keyring.primary == "k2"
    assert keyring.kids == ("k2", "k1")
    assert keyring.key("k1") == base64.b64decode(KEY_1)


def test_url_safe_and_unpadded_base64_keys_are_accepted() -> None:
    raw = os.urandom(32)
    url_safe = base64.urlsafe_b64encode(raw).decode().rstrip("=")

    assert parse_keyring(f"k1:{url_safe}").key("k1") == raw


def test_the_keyrings_repr_shows_key_ids_but_no_key_material() -> None:
    shown = repr(parse_keyring(f"k2:{KEY_2},k1:{KEY_1}"))

    assert "k2" in shown
    assert KEY_1 not in shown
    assert KEY_2 not in shown


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (f"k1:{KEY_1[:-4]}!!!!", "key 'k1' is not valid base64"),
        (f"k1:{SHORT_KEY}", "key 'k1' is 16 bytes long; it must be 32 random bytes"),
        (f"k1:{KEY_1},k1:{KEY_2}", "key id 'k1' appears twice"),
        (f"k1:{KEY_1},{KEY_2}", "entry 2 must look like kid:base64key"),
        (f"k 1:{KEY_1}", "entry 1 has an invalid key id"),
        (" , ", "no key found"),
    ],
)
def test_malformed_credential_keys_are_refused_with_a_clear_message_that_quotes_no_key(
    value: str, says: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_keyring(value)

    message = str(info.value)
    assert message.startswith("CREDENTIAL_KEYS: ")
    assert says in message
    for key in (KEY_1, KEY_2, SHORT_KEY, KEY_1[:-4]):
        assert key not in message


def test_credential_keys_win_over_a_key_file_and_nothing_is_generated(tmp_path) -> None:
    settings = make_settings(tmp_path, credential_keys=SecretStr(f"k1:{KEY_1}"))

    keyring = load_or_create_keyring(settings)

    assert (keyring.primary, keyring.source) == ("k1", "CREDENTIAL_KEYS")
    assert not key_file_path(settings).exists()
    assert describe_keys(settings) == "CREDENTIAL_KEYS: 1 key, primary 'k1'"


def test_an_empty_credential_keys_counts_as_unset(tmp_path) -> None:
    settings = make_settings(tmp_path, credential_keys=SecretStr("  "))

    keyring = load_or_create_keyring(settings)

    assert keyring.source == str(key_file_path(settings))
    assert key_file_path(settings).is_file()


# --- the generated key file ---------------------------------------------------------------------


def test_the_first_start_generates_a_private_key_file_and_says_so_loudly(
    tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path / "data")
    assert "will be generated" in describe_keys(settings)
    caplog.set_level(logging.DEBUG)
    previous_umask = os.umask(0)  # even a careless umask must not widen the file's mode
    try:
        keyring = load_or_create_keyring(settings)
    finally:
        os.umask(previous_umask)

    path = tmp_path / "data" / "credential.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert f"generated a new credential master key at {path}; back it up" in warnings[0].getMessage()
    assert "without it stored credentials cannot be decrypted" in warnings[0].getMessage()
    assert keyring.source == str(path)
    assert describe_keys(settings) == f"{path}: 1 key, primary {keyring.primary!r}"
    assert [p.name for p in path.parent.iterdir()] == ["credential.key"]  # no temporary left


def test_the_next_start_reuses_the_key_file_quietly(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(tmp_path)
    first = load_or_create_keyring(settings)
    record = encrypt(first, b"payload", aad_for("T", "U", "r"))
    caplog.clear()

    again = load_or_create_keyring(settings)

    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert decrypt(again, record, aad_for("T", "U", "r")) == b"payload"


def test_the_key_file_holds_a_line_credential_keys_accepts(tmp_path) -> None:
    settings = make_settings(tmp_path)
    from_file = load_or_create_keyring(settings)
    line = next(line for line in key_file_path(settings).read_text().splitlines() if not line.startswith("#"))

    from_env = load_keyring(make_settings(tmp_path, credential_keys=SecretStr(f"k9:{KEY_2},{line}")))

    assert from_env.key(from_file.primary) == from_file.key(from_file.primary)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604], ids=oct)
def test_a_key_file_others_can_read_is_refused(tmp_path, mode: int) -> None:
    settings = make_settings(tmp_path)
    load_or_create_keyring(settings)
    path = key_file_path(settings)
    path.chmod(mode)

    with pytest.raises(ConfigError) as info:
        load_or_create_keyring(settings)

    assert "accessible to other users" in str(info.value)
    assert f"chmod 600 {path}" in str(info.value)


def test_a_malformed_key_file_is_refused_naming_the_file(tmp_path) -> None:
    settings = make_settings(tmp_path)
    path = key_file_path(settings)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, f"k1:{SHORT_KEY}\n".encode())
    os.close(fd)

    with pytest.raises(ConfigError, match=f"^{path}: key 'k1' is 16 bytes long"):
        load_or_create_keyring(settings)


def test_loading_for_maintenance_never_generates_a_key(tmp_path) -> None:
    settings = make_settings(tmp_path)

    with pytest.raises(ConfigError, match="No credential key is configured"):
        load_keyring(settings)

    assert not key_file_path(settings).exists()
