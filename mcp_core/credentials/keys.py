"""Where the local backend's master keys come from: CREDENTIAL_KEYS, else a key file.

``CREDENTIAL_KEYS`` (``kid:base64key,…``, first = primary) wins when set. Otherwise the keys
are read from ``DATA_DIR/credential.key``, which is generated on the first start with mode
0600 and announced with a WARNING: whoever loses that file loses every stored credential.
The file holds the same ``kid:base64key`` line CREDENTIAL_KEYS takes, so moving the key into
the environment (or rotating it) is a copy, not a conversion.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
from datetime import UTC, datetime
from pathlib import Path

from mcp_core.credentials._crypto import Keyring, new_key_entry, parse_keyring
from mcp_core.errors import ConfigError
from mcp_core.settings import Settings

__all__ = ["KEY_FILE_NAME", "describe_keys", "key_file_path", "load_keyring", "load_or_create_keyring"]

logger = logging.getLogger(__name__)

KEY_FILE_NAME = "credential.key"
KEY_FILE_MODE = 0o600
_KEY_FILE_HEADER = (
    "# slack-mcp-bot credential master key (same format as CREDENTIAL_KEYS: kid:base64key).\n"
    "# Back it up and keep it secret: without it the stored credentials cannot be decrypted.\n"
)


def key_file_path(settings: Settings) -> Path:
    """``DATA_DIR/credential.key``: used when CREDENTIAL_KEYS is not set."""
    return settings.data_dir / KEY_FILE_NAME


def load_or_create_keyring(settings: Settings) -> Keyring:
    """The keyring; on a first start without CREDENTIAL_KEYS the key file is generated (and
    announced with a WARNING).

    Safe when several processes start at once: exactly one writes the file, all read it.

    Raises:
        ConfigError: CREDENTIAL_KEYS or the key file is malformed, the key file is readable
            by others than its owner, or the key file cannot be read or written.
    """
    configured = _configured(settings)
    if configured is not None:
        return parse_keyring(configured)
    path = key_file_path(settings)
    generated = False
    if not path.exists():
        generated = _create_key_file(path)
    keyring = _read_key_file(path)
    if not generated:
        return keyring
    logger.warning(
        "generated a new credential master key at %s; back it up — without it stored credentials "
        "cannot be decrypted. (To keep it in the environment instead, set CREDENTIAL_KEYS to the "
        "key line of that file.)",
        path,
    )
    return keyring


def load_keyring(settings: Settings) -> Keyring:
    """The keyring as configured, never generating a key (for maintenance such as rotation).

    Raises:
        ConfigError: as :func:`load_or_create_keyring`, or no key is configured at all.
    """
    configured = _configured(settings)
    if configured is not None:
        return parse_keyring(configured)
    path = key_file_path(settings)
    if not path.exists():
        raise ConfigError(
            f"No credential key is configured: CREDENTIAL_KEYS is not set and {path} is missing."
        )
    return _read_key_file(path)


def describe_keys(settings: Settings) -> str:
    """One line for ``slack-mcp-bot check``: where the keys come from. Never generates a key.

    Raises:
        ConfigError: the configured keys are malformed or the key file is unsafe.
    """
    path = key_file_path(settings)
    if _configured(settings) is None and not path.exists():
        return f"no key yet; one will be generated at {path} on the first start (back it up)"
    keyring = load_keyring(settings)
    count = len(keyring.kids)
    return f"{keyring.source}: {count} key{'s' if count != 1 else ''}, primary {keyring.primary!r}"


def _configured(settings: Settings) -> str | None:
    if settings.credential_keys is None:
        return None
    value = settings.credential_keys.get_secret_value()
    if not value.strip():
        return None  # CREDENTIAL_KEYS= left empty in .env means "not set"
    if key_file_path(settings).exists():
        logger.info("CREDENTIAL_KEYS is set, so %s is not used", key_file_path(settings))
    return value


def _read_key_file(path: Path) -> Keyring:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise ConfigError(f"Cannot read the credential key file {path}: {exc.strerror}.") from exc
    try:
        mode = os.fstat(fd).st_mode
        if os.name == "posix" and stat.S_IMODE(mode) & 0o077:
            raise ConfigError(
                f"The credential key file {path} is accessible to other users "
                f"(mode {stat.S_IMODE(mode):03o}); refusing to use it. Run `chmod 600 {path}` "
                "and, if others may have read it, rotate the key."
            )
        with os.fdopen(fd, encoding="utf-8") as file:
            fd = -1  # the file object closes it now
            text = file.read()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"The credential key file {path} is not text.") from exc
    finally:
        if fd >= 0:
            os.close(fd)
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return parse_keyring(",".join(lines), source=str(path))


def _create_key_file(path: Path) -> bool:
    """Write a new key file atomically; False if another process created one first."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write a private temporary file, then hard-link it into place: the key file appears
        # complete or not at all, and O_EXCL semantics of link() let exactly one starter win.
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
        try:
            try:
                if os.name == "posix":
                    os.fchmod(fd, KEY_FILE_MODE)  # whatever the umask
                kid = f"k{datetime.now(UTC):%Y%m%d}"
                os.write(fd, (_KEY_FILE_HEADER + new_key_entry(kid) + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(temporary, path)
            except FileExistsError:
                return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
        _sync_directory(path.parent)
    except OSError as exc:
        raise ConfigError(f"Cannot create the credential key file {path}: {exc.strerror}.") from exc
    return True


def _sync_directory(directory: Path) -> None:
    """Make the new file's directory entry durable: a key lost in a crash loses every credential."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
