"""A test-only Google Secret Manager: a real gRPC server speaking the service's wire format.

Google ships no Secret Manager emulator, so this implements the subset a credential store
needs on a real ``grpc.server`` bound to ``127.0.0.1``. Requests and responses are
(de)serialised with the client library's own proto-plus types, and failures use real gRPC
status codes, so the unmodified async client runs its production path (serialisation,
status → ``google.api_core.exceptions`` mapping, retries)::

    with running_fake_secret_manager() as fake:
        client = fake.async_client()          # call inside the event loop
        store = GcpCredentialStore("test-project", client=client)

Versions: as in Secret Manager, ``latest`` is the most recently created version whatever
its state; accessing a DISABLED or DESTROYED version (``latest`` included) answers
FAILED_PRECONDITION, a secret without versions NOT_FOUND. A destroyed version loses its
payload. ``ListSecretVersions`` lists newest first and filters on ``state:<STATE>`` terms
joined by ``OR``. Hooks for tests: ``corrupt_crc`` (answer a wrong ``data_crc32c``),
``refuse_destroy`` (DestroySecretVersion answers PERMISSION_DENIED), ``delay`` (seconds each
call sleeps before answering) and ``calls`` (method names, in order).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import google_crc32c
import grpc
from google.cloud.secretmanager_v1 import SecretManagerServiceAsyncClient
from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
    SecretManagerServiceGrpcAsyncIOTransport,
)
from google.cloud.secretmanager_v1.types import resources, service
from google.protobuf import empty_pb2

__all__ = ["FakeSecretManager", "running_fake_secret_manager"]

SERVICE = "google.cloud.secretmanager.v1.SecretManagerService"
_FILTER_TERM = re.compile(r"^labels\.([a-z0-9_-]+)[=:](.*)$")
_STATE_TERM = re.compile(r"^state:([A-Z_]+)$")
_DEFAULT_PAGE_SIZE = 25


@dataclass
class _Version:
    number: int
    data: bytes
    state: resources.SecretVersion.State = resources.SecretVersion.State.ENABLED


@dataclass
class FakeSecretManager:
    """The service's state and handlers; start it with :func:`running_fake_secret_manager`."""

    secrets: dict[str, resources.Secret] = field(default_factory=dict)
    versions: dict[str, list[_Version]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    corrupt_crc: bool = False
    refuse_destroy: bool = False
    delay: float = 0.0
    address: str = ""
    server: grpc.Server | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def async_client(self) -> SecretManagerServiceAsyncClient:
        """A real async client on a plaintext channel to this server (call inside the loop)."""
        channel = grpc.aio.insecure_channel(self.address)
        return SecretManagerServiceAsyncClient(
            transport=SecretManagerServiceGrpcAsyncIOTransport(channel=channel)
        )

    def stop(self) -> None:
        """Stop serving now (in-flight calls are cancelled); later calls find nothing listening."""
        if self.server is not None:
            self.server.stop(grace=None).wait()

    def payloads(self, secret_name: str) -> list[bytes]:
        """Every version's data of a secret, oldest first (for assertions)."""
        return [v.data for v in self.versions.get(secret_name, [])]

    def states(self, secret_name: str) -> list[str]:
        """Every version's state name of a secret, oldest first (for assertions)."""
        return [v.state.name for v in self.versions.get(secret_name, [])]

    # -- RPCs -------------------------------------------------------------------------------

    def CreateSecret(self, req: service.CreateSecretRequest, ctx: grpc.ServicerContext) -> resources.Secret:
        name = f"{req.parent}/secrets/{req.secret_id}"
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,255}", req.secret_id):
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "Secret ID is invalid.")
        if name in self.secrets:
            ctx.abort(grpc.StatusCode.ALREADY_EXISTS, f"Secret [{name}] already exists.")
        if "automatic" not in req.secret.replication and "user_managed" not in req.secret.replication:
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "Secret.replication is required.")
        secret = resources.Secret(req.secret)
        secret.name = name
        self.secrets[name], self.versions[name] = secret, []
        return secret

    def GetSecret(self, req: service.GetSecretRequest, ctx: grpc.ServicerContext) -> resources.Secret:
        return self._secret(req.name, ctx)

    def AddSecretVersion(
        self, req: service.AddSecretVersionRequest, ctx: grpc.ServicerContext
    ) -> resources.SecretVersion:
        self._secret(req.parent, ctx)
        data = req.payload.data
        if "data_crc32c" in req.payload and req.payload.data_crc32c != google_crc32c.value(data):
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "Data integrity check failed.")
        versions = self.versions[req.parent]
        version = _Version(number=len(versions) + 1, data=data)
        versions.append(version)
        return resources.SecretVersion(name=f"{req.parent}/versions/{version.number}", state=version.state)

    def AccessSecretVersion(
        self, req: service.AccessSecretVersionRequest, ctx: grpc.ServicerContext
    ) -> service.AccessSecretVersionResponse:
        secret_name, _, version_id = req.name.rpartition("/versions/")
        self._secret(secret_name, ctx)
        versions = self.versions[secret_name]
        if version_id == "latest":
            if not versions:
                ctx.abort(grpc.StatusCode.NOT_FOUND, f"Secret [{secret_name}] has no versions.")
            version = versions[-1]
        else:
            found = [v for v in versions if str(v.number) == version_id]
            if not found:
                ctx.abort(grpc.StatusCode.NOT_FOUND, f"Secret Version [{req.name}] not found.")
            version = found[0]
        if version.state != resources.SecretVersion.State.ENABLED:
            ctx.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{secret_name}/versions/{version.number} is in {version.state.name} state.",
            )
        crc = google_crc32c.value(version.data) ^ (1 if self.corrupt_crc else 0)
        return service.AccessSecretVersionResponse(
            name=f"{secret_name}/versions/{version.number}",
            payload=resources.SecretPayload(data=version.data, data_crc32c=crc),
        )

    def ListSecrets(
        self, req: service.ListSecretsRequest, ctx: grpc.ServicerContext
    ) -> service.ListSecretsResponse:
        terms: list[tuple[str, str]] = []
        for term in req.filter.split():
            if term.upper() == "AND":
                continue
            match = _FILTER_TERM.match(term)
            if not match:
                ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Unsupported filter term {term!r}.")
            terms.append((match[1], match[2].strip('"')))
        prefix = f"{req.parent}/secrets/"
        matching = [
            secret
            for name, secret in sorted(self.secrets.items())
            if name.startswith(prefix) and all(secret.labels.get(k) == v for k, v in terms)
        ]
        start = int(req.page_token or 0)
        size = req.page_size or _DEFAULT_PAGE_SIZE
        page = matching[start : start + size]
        more = start + size < len(matching)
        return service.ListSecretsResponse(
            secrets=page, next_page_token=str(start + size) if more else "", total_size=len(matching)
        )

    def ListSecretVersions(
        self, req: service.ListSecretVersionsRequest, ctx: grpc.ServicerContext
    ) -> service.ListSecretVersionsResponse:
        self._secret(req.parent, ctx)
        states: set[str] = set()
        for term in req.filter.split():
            if term.upper() == "OR":
                continue
            match = _STATE_TERM.match(term)
            if not match or match[1] not in resources.SecretVersion.State.__members__:
                ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Unsupported filter term {term!r}.")
            states.add(match[1])
        matching = [
            resources.SecretVersion(name=f"{req.parent}/versions/{v.number}", state=v.state)
            for v in reversed(self.versions[req.parent])
            if not states or v.state.name in states
        ]
        start = int(req.page_token or 0)
        size = req.page_size or _DEFAULT_PAGE_SIZE
        more = start + size < len(matching)
        return service.ListSecretVersionsResponse(
            versions=matching[start : start + size],
            next_page_token=str(start + size) if more else "",
            total_size=len(matching),
        )

    def DestroySecretVersion(
        self, req: service.DestroySecretVersionRequest, ctx: grpc.ServicerContext
    ) -> resources.SecretVersion:
        secret_name, _, version_id = req.name.rpartition("/versions/")
        self._secret(secret_name, ctx)
        if self.refuse_destroy:
            ctx.abort(
                grpc.StatusCode.PERMISSION_DENIED, "Permission 'secretmanager.versions.destroy' denied."
            )
        found = [v for v in self.versions[secret_name] if str(v.number) == version_id]
        if not found:
            ctx.abort(grpc.StatusCode.NOT_FOUND, f"Secret Version [{req.name}] not found.")
        if found[0].state == resources.SecretVersion.State.DESTROYED:
            ctx.abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"Secret Version [{req.name}] is already destroyed."
            )
        found[0].state = resources.SecretVersion.State.DESTROYED
        found[0].data = b""
        return resources.SecretVersion(name=req.name, state=found[0].state)

    def DeleteSecret(self, req: service.DeleteSecretRequest, ctx: grpc.ServicerContext) -> empty_pb2.Empty:
        self._secret(req.name, ctx)
        del self.secrets[req.name], self.versions[req.name]
        return empty_pb2.Empty()

    def _secret(self, name: str, ctx: grpc.ServicerContext) -> resources.Secret:
        if name not in self.secrets:
            ctx.abort(grpc.StatusCode.NOT_FOUND, f"Secret [{name}] not found or has no versions.")
        return self.secrets[name]

    def _handler(self, method: str) -> Callable[[Any, grpc.ServicerContext], Any]:
        implementation = getattr(self, method)

        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            if self.delay:
                time.sleep(self.delay)
            with self._lock:
                self.calls.append(method)
                return implementation(request, context)

        return handle


_TYPES: dict[str, tuple[Any, Any]] = {
    "CreateSecret": (service.CreateSecretRequest, resources.Secret),
    "GetSecret": (service.GetSecretRequest, resources.Secret),
    "AddSecretVersion": (service.AddSecretVersionRequest, resources.SecretVersion),
    "AccessSecretVersion": (service.AccessSecretVersionRequest, service.AccessSecretVersionResponse),
    "ListSecrets": (service.ListSecretsRequest, service.ListSecretsResponse),
    "ListSecretVersions": (service.ListSecretVersionsRequest, service.ListSecretVersionsResponse),
    "DestroySecretVersion": (service.DestroySecretVersionRequest, resources.SecretVersion),
    "DeleteSecret": (service.DeleteSecretRequest, empty_pb2.Empty),
}


def _serializer(response_type: Any) -> Callable[[Any], bytes]:
    if response_type is empty_pb2.Empty:
        return lambda message: message.SerializeToString()
    return response_type.serialize


@contextmanager
def running_fake_secret_manager() -> Iterator[FakeSecretManager]:
    """Serve a fresh :class:`FakeSecretManager` on ``127.0.0.1:<free port>`` until exit."""
    fake = FakeSecretManager()
    handlers = {
        method: grpc.unary_unary_rpc_method_handler(
            fake._handler(method),
            request_deserializer=request_type.deserialize,
            response_serializer=_serializer(response_type),
        )
        for method, (request_type, response_type) in _TYPES.items()
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    fake.address, fake.server = f"127.0.0.1:{port}", server
    try:
        yield fake
    finally:
        fake.stop()
