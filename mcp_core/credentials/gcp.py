"""The GCP credential backend: one Google Secret Manager secret per credential ref.

Each ref gets its own secret, ``projects/<project>/secrets/mcp-<team>-<user>-<ref>``, whose
id encodes team, user and ref injectively in ``[A-Za-z0-9_-]`` (letters and digits kept,
every other character ``_<hex>`` per UTF-8 byte, ``-`` only as separator). Another user's
lookup therefore names another secret and finds nothing. The secret carries the labels
``app=slack-mcp-bot``, ``team`` and ``user`` (lower-cased, label-safe: for filtering in the
console) and the exact ``team_id``, ``user_id`` and ``ref`` as annotations (so an operator can
tell whose secret it is; labels are lossy).

``put`` stores the values as JSON in a new secret version with a CRC32C checksum, then
destroys the older enabled or disabled versions so a previous value cannot be read by
version number (best effort: a failure there is logged and the put still succeeds); ``get``
reads ``versions/latest`` (the newest version) and checks the checksum; ``delete`` deletes
the secret with all its versions. Every RPC has a deadline (``timeout``, 10 s) and retries
only UNAVAILABLE, within that deadline.

Any failure of Secret Manager itself (unreachable, deadline, quota, permission or login
refused) is a :class:`~mcp_core.errors.CredentialBackendError`; only a latest version that
cannot be read (disabled or destroyed: FAILED_PRECONDITION on access), fails its checksum or
is not a map of strings is a plain :class:`~mcp_core.errors.CredentialError`.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

import google_crc32c
from google.api_core import exceptions as gexc
from google.api_core import retry_async
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_core.credentials.payload import MAX_REF_CHARS, decode_values, encode_values
from mcp_core.errors import ConfigError, CredentialBackendError, CredentialError
from mcp_core.settings import Settings

__all__ = ["APP_LABEL", "GcpCredentialStore", "check", "open_store"]

logger = logging.getLogger(__name__)

APP_LABEL = "slack-mcp-bot"
"""Value of the ``app`` label on every secret this backend creates."""
DEFAULT_TIMEOUT = 10.0
MAX_SECRET_ID_CHARS = 255
MAX_LABEL_CHARS = 63
LIST_PAGE_SIZE = 100
OLD_VERSIONS_FILTER = "state:ENABLED OR state:DISABLED"
"""The versions ``put`` destroys once a newer one is stored (all but DESTROYED)."""

_T = TypeVar("_T")


def _configured_project(settings: Settings) -> str | None:
    return settings.google_cloud_project or os.environ.get("GOOGLE_CLOUD_PROJECT")


def check(settings: Settings) -> None:
    """Refuse a start without the project that holds the secrets.

    Raises:
        ConfigError: neither the GOOGLE_CLOUD_PROJECT setting nor the variable is set.
    """
    if not _configured_project(settings):
        raise ConfigError("The gcp credential backend needs GOOGLE_CLOUD_PROJECT.")


async def open_store(settings: Settings, engine: AsyncEngine) -> GcpCredentialStore:
    """A store in GOOGLE_CLOUD_PROJECT; its client is built on first use from the application
    default credentials.

    Raises:
        ConfigError: as :func:`check`.
    """
    check(settings)
    return GcpCredentialStore(_configured_project(settings) or "")


class GcpCredentialStore:
    """Credentials in Google Secret Manager, one secret per (team, user, ref).

    Implements :class:`~mcp_core.credentials.CredentialStore` and the registry's
    ``SecretSource``. ``client`` is a ``SecretManagerServiceAsyncClient`` (tests inject one on
    a plaintext channel); without it one is built on first use from the application default
    credentials and closed by :meth:`aclose` (after which the store refuses further calls).
    An injected client is never closed here.

    Raises:
        ConfigError: ``project`` is empty.
    """

    def __init__(self, project: str, client: Any = None, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        if not project or "/" in project:
            raise ConfigError("GOOGLE_CLOUD_PROJECT must name the project that holds the secrets.")
        self._project = project
        self._client = client
        self._owns_client = client is None
        self._closed = False
        self._timeout = timeout
        self._retry = retry_async.AsyncRetry(
            predicate=retry_async.if_exception_type(gexc.ServiceUnavailable),
            initial=0.2,
            maximum=2.0,
            multiplier=2.0,
            timeout=timeout,
        )

    @property
    def client(self) -> Any:
        """The ``SecretManagerServiceAsyncClient`` in use, built now if the store owns it.

        Raises:
            ConfigError: no application default credentials to build it from.
            CredentialBackendError: the store was closed.
        """
        return self._get_client()

    async def put(self, team_id: str, user_id: str, values: Mapping[str, str], ref: str | None = None) -> str:
        """Store ``values`` as a new version of the ref's secret; return the ref.

        Without ``ref`` a new one (uuid4 hex) and a new secret are made; with one, a new
        version is added to its secret (created if missing), so ``get`` returns these values,
        and the older versions are destroyed (best effort, see :meth:`_destroy_older`).

        Raises:
            ValueError: a key is not ``header:``/``env:``/``query:<name>``, a value is not a
                string, or ``ref`` is empty or too long. The message never quotes a value.
            CredentialBackendError: Secret Manager failed, timed out or refused access.
        """
        data = encode_values(values)
        if ref is not None and not 0 < len(ref) <= MAX_REF_CHARS:
            raise ValueError(f"A credential ref must have 1 to {MAX_REF_CHARS} characters.")
        ref = ref or uuid.uuid4().hex
        name = self._secret_name(team_id, user_id, ref)
        client = self._get_client()
        created = False
        try:
            await self._call(
                client.create_secret(
                    request={
                        "parent": f"projects/{self._project}",
                        "secret_id": name.rpartition("/")[2],
                        "secret": {
                            "replication": {"automatic": {}},
                            "labels": {"app": APP_LABEL, "team": _label(team_id), "user": _label(user_id)},
                            "annotations": {"team_id": team_id, "user_id": user_id, "ref": ref},
                        },
                    },
                    retry=self._retry,
                    timeout=self._timeout,
                ),
                "create",
                team_id,
                user_id,
                ref,
            )
            created = True
        except gexc.AlreadyExists:
            pass  # an existing ref (or our own retried create): add a version to it
        try:
            added = await self._call(
                client.add_secret_version(
                    request={
                        "parent": name,
                        "payload": {"data": data, "data_crc32c": google_crc32c.value(data)},
                    },
                    retry=self._retry,
                    timeout=self._timeout,
                ),
                "add a version to",
                team_id,
                user_id,
                ref,
            )
        except Exception:
            if created:
                await self._forget(name)
            raise
        await self._destroy_older(name, _version_number(added.name))
        return ref

    async def get(self, team_id: str, user_id: str, credential_ref: str) -> dict[str, str]:
        """The user's values under ``credential_ref`` (latest version); empty if there are none.

        Raises:
            CredentialError: the payload fails its CRC32C check or is not a map of strings,
                or the latest version is destroyed or disabled.
            CredentialBackendError: Secret Manager failed, timed out or refused access.
        """
        name = self._secret_name(team_id, user_id, credential_ref)
        try:
            response = await self._call(
                self._get_client().access_secret_version(
                    request={"name": f"{name}/versions/latest"}, retry=self._retry, timeout=self._timeout
                ),
                "read",
                team_id,
                user_id,
                credential_ref,
            )
        except gexc.NotFound:
            logger.warning("no stored credentials %s for %s/%s", credential_ref, team_id, user_id)
            return {}
        payload = response.payload
        if "data_crc32c" not in payload or payload.data_crc32c != google_crc32c.value(payload.data):
            logger.warning(
                "stored credentials %s of %s/%s failed the CRC32C check", credential_ref, team_id, user_id
            )
            raise CredentialError("Secret Manager returned a payload that fails its CRC32C checksum")
        try:
            return decode_values(payload.data)
        except CredentialError as exc:
            logger.warning(
                "stored credentials %s of %s/%s are unreadable: %s",
                credential_ref,
                team_id,
                user_id,
                exc.reason,
            )
            raise

    async def delete(self, team_id: str, user_id: str, credential_ref: str) -> bool:
        """Delete the ref's secret with every version; False if the user has none under it.

        Raises:
            CredentialBackendError: Secret Manager failed, timed out or refused access.
        """
        name = self._secret_name(team_id, user_id, credential_ref)
        try:
            await self._call(
                self._get_client().delete_secret(
                    request={"name": name}, retry=self._retry, timeout=self._timeout
                ),
                "delete",
                team_id,
                user_id,
                credential_ref,
            )
        except gexc.NotFound:
            return False
        return True

    async def aclose(self) -> None:
        """Close the client (and its gRPC channel) this store built; an injected client is left
        to its owner. Safe to call twice."""
        if not self._owns_client:
            return
        self._closed = True
        if self._client is not None:
            client, self._client = self._client, None
            await client.transport.close()

    def _secret_name(self, team_id: str, user_id: str, ref: str) -> str:
        secret_id = f"mcp-{_encode(team_id)}-{_encode(user_id)}-{_encode(ref)}"
        if len(secret_id) > MAX_SECRET_ID_CHARS:
            raise ValueError("This team, user and credential ref are too long for a Secret Manager id.")
        return f"projects/{self._project}/secrets/{secret_id}"

    def _get_client(self) -> Any:
        if self._closed:
            raise CredentialBackendError("the Secret Manager client is closed (the bot is stopping)")
        if self._client is None:
            from google.auth.exceptions import DefaultCredentialsError
            from google.cloud.secretmanager_v1 import SecretManagerServiceAsyncClient

            try:
                self._client = SecretManagerServiceAsyncClient()
            except DefaultCredentialsError as exc:
                raise ConfigError(
                    "CREDENTIAL_BACKEND=gcp needs Google credentials: set GOOGLE_APPLICATION_CREDENTIALS "
                    "or run where application default credentials are available."
                ) from exc
        return self._client

    async def _call(self, rpc: Awaitable[_T], action: str, team_id: str, user_id: str, ref: str) -> _T:
        """Await one RPC; NotFound and AlreadyExists pass through, other failures become ours.

        Only FAILED_PRECONDITION on a read (the latest version is disabled or destroyed) is about
        the record; every other failure, on any call, is Secret Manager's.
        """
        try:
            return await rpc
        except (gexc.NotFound, gexc.AlreadyExists):
            raise
        except gexc.GoogleAPIError as exc:
            logger.warning(
                "cannot %s stored credentials %s of %s/%s: %s", action, ref, team_id, user_id, _describe(exc)
            )
            reason = f"Secret Manager could not {action} the secret: {_describe(exc)}"
            if action == "read" and isinstance(exc, gexc.FailedPrecondition):
                raise CredentialError(reason) from None
            raise CredentialBackendError(reason) from None

    async def _destroy_older(self, name: str, newest: int) -> None:
        """Best effort: destroy the secret's live versions older than ``newest``.

        A failure is logged with the secret id (never a value) and skipped: the new version
        is stored either way.
        """
        client = self._get_client()
        secret_id = name.rpartition("/")[2]
        try:
            pager = await client.list_secret_versions(
                request={"parent": name, "filter": OLD_VERSIONS_FILTER, "page_size": LIST_PAGE_SIZE},
                retry=self._retry,
                timeout=self._timeout,
            )
            older = [version.name async for version in pager if _version_number(version.name) < newest]
        except gexc.GoogleAPIError as exc:
            logger.warning("could not list old versions of secret %s: %s", secret_id, _describe(exc))
            return
        for version_name in older:
            try:
                await client.destroy_secret_version(
                    request={"name": version_name}, retry=self._retry, timeout=self._timeout
                )
            except gexc.GoogleAPIError as exc:
                logger.warning(
                    "could not destroy old version %s of secret %s: %s",
                    version_name.rpartition("/")[2],
                    secret_id,
                    _describe(exc),
                )

    async def _forget(self, name: str) -> None:
        """Best effort: delete a secret just created whose first version could not be added."""
        try:
            await self._get_client().delete_secret(request={"name": name}, retry=None, timeout=self._timeout)
        except gexc.GoogleAPIError as exc:
            logger.warning("could not remove an empty secret after a failed put: %s", _describe(exc))


def _describe(exc: BaseException) -> str:
    """The failure's kind, never its message (which names the secret)."""
    if isinstance(exc, gexc.RetryError) and exc.cause is not None:
        return f"{type(exc).__name__} after {type(exc.cause).__name__}"
    return type(exc).__name__


def _version_number(version_name: str) -> int:
    """N of ``projects/…/secrets/…/versions/N``."""
    return int(version_name.rpartition("/")[2])


def _encode(part: str) -> str:
    """Injective map to ``[A-Za-z0-9_]``: ASCII letters and digits kept, any other byte ``_xx``."""
    return "".join(
        chr(byte) if chr(byte).isascii() and chr(byte).isalnum() else f"_{byte:02x}" for byte in part.encode()
    )


def _label(value: str) -> str:
    """A label value: lower case, ``[a-z0-9_-]`` only, at most 63 characters (lossy)."""
    lowered = value.lower()
    return "".join(c if (c.isascii() and c.isalnum()) or c in "_-" else "_" for c in lowered)[
        :MAX_LABEL_CHARS
    ]
