"""The AWS credential backend: one AWS Secrets Manager secret per credential ref.

A secret is named ``<prefix><team>/<user>/<ref>`` (prefix ``slack-mcp-bot/`` by default),
tagged ``team``, ``user`` and ``app=slack-mcp-bot``, and holds the values as a JSON object in
its ``SecretString``. Because the name embeds the owner, a (team, user) asking for someone
else's ref looks up a different name and finds nothing. Replacing a ref adds a version
(``AWSCURRENT``; the old one stays readable as ``AWSPREVIOUS``); delete removes the secret
at once, without a recovery window.

The client is boto3's, configured only by the standard AWS environment (credentials, region,
``AWS_ENDPOINT_URL_SECRETS_MANAGER``); boto3 is synchronous, so every call runs in a worker
thread. botocore logs request and response bodies at DEBUG: those records are dropped here
so a secret never reaches the log whatever LOG_LEVEL is.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import boto3
import botocore.config
from botocore.exceptions import BotoCoreError, ClientError, NoRegionError
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_core.credentials.payload import MAX_REF_CHARS, decode_values, encode_values
from mcp_core.errors import ConfigError, CredentialBackendError, CredentialError
from mcp_core.settings import Settings

__all__ = ["DEFAULT_PREFIX", "AwsCredentialStore", "check", "open_store"]

logger = logging.getLogger(__name__)

DEFAULT_PREFIX = "slack-mcp-bot/"
APP_TAG = "slack-mcp-bot"
CLIENT_CONFIG = botocore.config.Config(
    connect_timeout=5, read_timeout=10, retries={"max_attempts": 3, "mode": "standard"}
)
_NOT_FOUND = "ResourceNotFoundException"
_EXISTS = "ResourceExistsException"
_REF = re.compile(r"[A-Za-z0-9_+=.@-]+")
"""A ref is one name segment: AWS's allowed characters without ``/``."""
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+.@-")
"""Characters kept as they are in the team and user segments; any other byte becomes ``=HH``."""
_PREFIX = re.compile(r"[A-Za-z0-9/_+=.@-]*")
_BODY_LOGGERS = ("botocore.endpoint", "botocore.parsers", "botocore.hooks", "botocore.httpchecksum")

T = TypeVar("T")


class _DropBodies(logging.Filter):
    """Drops botocore's DEBUG records, which carry request and response bodies (the secrets)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


_BODY_FILTER = _DropBodies()


def _silence_bodies() -> None:
    for name in _BODY_LOGGERS:
        target = logging.getLogger(name)
        if _BODY_FILTER not in target.filters:
            target.addFilter(_BODY_FILTER)


def check(settings: Settings) -> None:
    """Nothing to check before the first call: boto3 reads its own environment."""


async def open_store(settings: Settings, engine: AsyncEngine) -> AwsCredentialStore:
    """A store on a client built from the standard AWS environment, under AWS_SECRETS_PREFIX.

    Raises:
        ConfigError: the prefix is not a valid name prefix, or no region is configured.
    """
    return AwsCredentialStore(prefix=settings.aws_secrets_prefix)


class AwsCredentialStore:
    """Credentials in AWS Secrets Manager, one secret per ref under ``prefix``.

    Implements :class:`~mcp_core.credentials.CredentialStore` and the registry's
    ``SecretSource``. ``client`` is a boto3 ``secretsmanager`` client (tests inject one);
    without it one is built from the standard AWS environment, ``region`` overriding it, and
    closed by :meth:`aclose`. An injected client is never closed here.

    Any failure of AWS itself (unreachable, timed out, throttled, access or login refused) is a
    :class:`~mcp_core.errors.CredentialBackendError`; only a secret that is not a JSON map of
    strings is a plain :class:`~mcp_core.errors.CredentialError`.

    Raises:
        ConfigError: ``prefix`` has characters AWS does not allow in a name, or no region is
            configured (set AWS_REGION or AWS_DEFAULT_REGION).
    """

    def __init__(
        self, client: Any = None, *, prefix: str = DEFAULT_PREFIX, region: str | None = None
    ) -> None:
        if not _PREFIX.fullmatch(prefix):
            raise ConfigError(
                f"The AWS secret name prefix {prefix!r} may only use letters, digits and /_+=.@-."
            )
        _silence_bodies()
        self._owns_client = client is None
        if client is None:
            try:
                client = boto3.client("secretsmanager", region_name=region, config=CLIENT_CONFIG)
            except NoRegionError as exc:
                raise ConfigError(
                    "AWS Secrets Manager needs a region: set AWS_REGION or AWS_DEFAULT_REGION."
                ) from exc
            except BotoCoreError as exc:
                raise ConfigError(f"The AWS Secrets Manager client cannot be built: {exc}") from exc
        self._client = client
        self._prefix = prefix

    @property
    def client(self) -> Any:
        """The boto3 ``secretsmanager`` client in use (its ``meta.endpoint_url`` shows where)."""
        return self._client

    async def aclose(self) -> None:
        """Close the client this store built (its connection pool); an injected client is left
        to its owner. Safe to call twice."""
        if self._owns_client:
            self._client.close()  # clears the connection pool: quick, no network round trip

    async def put(self, team_id: str, user_id: str, values: Mapping[str, str], ref: str | None = None) -> str:
        """Store ``values`` as a secret; return their ref.

        Without ``ref`` a new secret is created under a fresh ref. With one, a new version of
        the user's secret under it is added (the previous stays as ``AWSPREVIOUS``), or the
        secret is created under that ref if they have none.

        Raises:
            ValueError: a key is not ``header:``/``env:``/``query:<name>``, a value is not a
                string, ``ref`` is not 1 to 200 of ``A-Z a-z 0-9 _+=.@-``, or team or user is
                empty. The message never quotes a value.
            CredentialBackendError: AWS could not be reached or refused; see ``reason``.
        """
        secret = encode_values(values).decode()
        if ref is not None and not _valid_ref(ref):
            raise ValueError(
                f"A credential ref must have 1 to {MAX_REF_CHARS} of the characters A-Z a-z 0-9 _+=.@-."
            )
        name = self._name(team_id, user_id, ref or uuid.uuid4().hex)
        final_ref = name.rsplit("/", 1)[1]
        if ref is not None and await self._put_version(name, secret):
            return final_ref
        tags = [
            {"Key": "team", "Value": team_id},
            {"Key": "user", "Value": user_id},
            {"Key": "app", "Value": APP_TAG},
        ]
        try:
            await self._call(
                "create_secret",
                self._client.create_secret,
                Name=name,
                SecretString=secret,
                Tags=tags,
                Description=f"slack-mcp-bot credentials of {team_id}/{user_id}",
            )
        except ClientError as exc:
            # Created meanwhile under a given ref: replace it as asked.
            if ref is None or _code(exc) != _EXISTS or not await self._put_version(name, secret):
                raise self._error("create_secret", exc) from None
        return final_ref

    async def get(self, team_id: str, user_id: str, credential_ref: str) -> dict[str, str]:
        """The user's values under ``credential_ref``; empty if they have none under it.

        Raises:
            CredentialError: the secret does not hold a JSON map of strings.
            CredentialBackendError: AWS could not be reached or refused; see ``reason``.
        """
        if not _valid_ref(credential_ref):
            logger.warning("no stored credentials %r for %s/%s", credential_ref, team_id, user_id)
            return {}
        name = self._name(team_id, user_id, credential_ref)
        try:
            response = await self._call("get_secret_value", self._client.get_secret_value, SecretId=name)
        except ClientError as exc:
            if _code(exc) == _NOT_FOUND:
                logger.warning("no stored credentials %s for %s/%s", credential_ref, team_id, user_id)
                return {}
            raise self._error("get_secret_value", exc) from None
        try:
            return decode_values(response.get("SecretString"))
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
        """Remove the user's secret under ``credential_ref`` at once; False if they had none.

        Raises:
            CredentialBackendError: AWS could not be reached or refused; see ``reason``.
        """
        if not _valid_ref(credential_ref):
            return False
        name = self._name(team_id, user_id, credential_ref)
        # With ForceDeleteWithoutRecovery a missing secret is not an error in AWS (nor in
        # moto), so whether there was one is asked first.
        try:
            await self._call("describe_secret", self._client.describe_secret, SecretId=name)
        except ClientError as exc:
            if _code(exc) == _NOT_FOUND:
                return False
            raise self._error("describe_secret", exc) from None
        try:
            await self._call(
                "delete_secret",
                self._client.delete_secret,
                SecretId=name,
                ForceDeleteWithoutRecovery=True,
            )
        except ClientError as exc:
            if _code(exc) == _NOT_FOUND:
                return False
            raise self._error("delete_secret", exc) from None
        return True

    async def _put_version(self, name: str, secret: str) -> bool:
        """Add a version to secret ``name``; False if there is no such secret."""
        try:
            await self._call(
                "put_secret_value", self._client.put_secret_value, SecretId=name, SecretString=secret
            )
        except ClientError as exc:
            if _code(exc) == _NOT_FOUND:
                return False
            raise self._error("put_secret_value", exc) from None
        return True

    async def _call(self, operation: str, function: Callable[..., T], **kwargs: Any) -> T:
        """``function(**kwargs)`` in a worker thread; transport failures become CredentialBackendError.

        ``ClientError`` (an answer from AWS) is left to the caller, which knows which codes
        mean "none".
        """
        try:
            return await asyncio.to_thread(function, **kwargs)
        except BotoCoreError as exc:
            # The exception's text names only the endpoint or the missing setting, never a body.
            reason = f"AWS Secrets Manager could not be reached during {operation}: {type(exc).__name__}"
            logger.warning("%s (%s)", reason, exc)
            raise CredentialBackendError(reason) from None

    def _error(self, operation: str, exc: ClientError) -> CredentialBackendError:
        code = _code(exc) or "unknown error"
        reason = f"AWS Secrets Manager refused {operation}: {code}"
        # The message may name the secret (team/user/ref), never its value.
        logger.warning("%s (%s)", reason, exc.response.get("Error", {}).get("Message", ""))
        return CredentialBackendError(reason)

    def _name(self, team_id: str, user_id: str, ref: str) -> str:
        if not team_id or not user_id:
            raise ValueError("Credentials belong to a team and a user; both ids must be non-empty.")
        return f"{self._prefix}{_encode(team_id)}/{_encode(user_id)}/{ref}"


def _valid_ref(ref: str) -> bool:
    return isinstance(ref, str) and len(ref) <= MAX_REF_CHARS and bool(_REF.fullmatch(ref))


def _encode(segment: str) -> str:
    """``segment`` in AWS's name characters, injectively: other bytes (and ``=``, ``/``) as ``=HH``.

    Injective, so two different ids never share a name (``a b`` and ``a_b`` stay apart).
    """
    return "".join(
        char if char in _SAFE else "".join(f"={byte:02X}" for byte in char.encode()) for char in segment
    )


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
