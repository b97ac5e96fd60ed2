"""JSON Schema validation of tool schemas that never fetches anything.

A tool's schemas come from its MCP server, so any ``$ref`` in them is the server's choice.
jsonschema's default registry resolves a reference it does not hold with a blocking
``urlopen``: any server could make the bot GET any URL, or stall the event loop. The MCP spec
says clients must not dereference network references, so here nothing is ever retrieved:

* ``no_fetch_validator`` builds a validator whose ``referencing.Registry`` holds the schema
  itself (so ``#/...`` pointers, ``$defs``, anchors and embedded ``$id`` documents resolve) and
  the bundled metaschemas, and whose ``retrieve`` refuses every URI.
* ``unresolved_references`` lists the references that registry cannot resolve, so a tool that
  depends on one is refused at discovery instead of failing on every call.

    validator = no_fetch_validator(schema)
    for missing in unresolved_references(schema):
        print(missing.reason("inputSchema"))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import urldefrag, urljoin

import jsonschema
import referencing.jsonschema
from jsonschema.protocols import Validator
from jsonschema_specifications import REGISTRY as METASCHEMAS
from referencing import Registry, Resource, Specification
from referencing.exceptions import InvalidAnchor, NoSuchAnchor, NoSuchResource, PointerToNowhere, Unresolvable

__all__ = ["UnresolvedReference", "no_fetch_validator", "unresolved_references", "validator_class"]

REFERENCE_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")
"""Keywords whose value a validator looks up (2020-12, 2019-09 and earlier drafts)."""


class UnresolvedReference(NamedTuple):
    """A reference the schema makes that the bot cannot resolve without fetching."""

    uri: str
    """The reference made absolute against the base URI in effect where it appears."""
    external: bool
    """True if it names a document outside the schema; False for a pointer or anchor the
    schema's own documents lack."""

    def reason(self, where: str) -> str:
        """One line for a warning or a skipped-tool reason: ``where`` names the schema."""
        if self.external:
            return f"{where} refers to {self.uri}, which the bot does not fetch"
        return f"{where} refers to {self.uri}, which it does not contain"


def _refuse_to_fetch(uri: str) -> Resource[Any]:
    raise NoSuchResource(ref=uri)


def validator_class(schema: Mapping[str, Any]) -> type[Validator]:
    """The validator class ``schema``'s ``$schema`` names; draft 2020-12, MCP's default dialect,
    when it names none or one jsonschema does not bundle (a metaschema is never fetched)."""
    return jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)


def _dialect(schema: Mapping[str, Any]) -> tuple[type[Validator], Specification[Any]]:
    """The validator class for ``schema`` and its referencing specification."""
    cls = validator_class(schema)
    dialect_id = cls.ID_OF(cls.META_SCHEMA) or "urn:unknown-dialect"
    return cls, referencing.jsonschema.specification_with(dialect_id, default=Specification.OPAQUE)


def _registry(resource: Resource[Any]) -> Registry[Any]:
    """The schema's own documents and the bundled metaschemas; retrieving anything else fails."""
    refusing: Registry[Any] = Registry(retrieve=_refuse_to_fetch)
    return METASCHEMAS.combine(refusing).with_resource(resource.id() or "", resource).crawl()


def no_fetch_validator(schema: Mapping[str, Any]) -> Validator:
    """A validator for ``schema`` that resolves references only within the schema and the
    bundled metaschemas. Any other reference raises ``referencing.exceptions.Unresolvable``
    when validation reaches it; nothing is fetched."""
    cls, specification = _dialect(schema)
    return cls(schema, registry=_registry(specification.create_resource(schema)))


def unresolved_references(schema: Mapping[str, Any]) -> list[UnresolvedReference]:
    """Every reference in ``schema`` that ``no_fetch_validator`` could not resolve, in order.

    The walk follows the schema's specification: subschemas by keyword, the base URI changing
    at each ``$id``, and the target of every reference that does resolve (a reference may point
    anywhere in the document, and the target's own references count too).
    """
    _cls, specification = _dialect(schema)
    root = specification.create_resource(schema)
    registry = _registry(root)
    found: list[UnresolvedReference] = []
    seen: set[int] = set()

    def walk(resource: Resource[Any], resolver: referencing.Resolver[Any], base: str) -> None:
        contents = resource.contents
        if not isinstance(contents, Mapping) or id(contents) in seen:
            return
        seen.add(id(contents))
        for keyword in REFERENCE_KEYWORDS:
            ref = contents.get(keyword)
            if not isinstance(ref, str):
                continue
            uri = urljoin(base, ref)
            try:
                resolved = resolver.lookup(ref)
            except (PointerToNowhere, NoSuchAnchor, InvalidAnchor):
                found.append(UnresolvedReference(uri, external=False))
                continue
            except Unresolvable:
                found.append(UnresolvedReference(uri, external=True))
                continue
            walk(specification.create_resource(resolved.contents), resolved.resolver, urldefrag(uri).url)
        for sub in resource.subresources():
            walk(sub, resolver.in_subresource(sub), urljoin(base, sub.id() or ""))

    walk(root, registry.resolver_with_root(root), root.id() or "")
    return found
