"""Flatten an MCP ``CallToolResult`` into capped text for Slack and the LLM.

Binary content (images, audio, blobs) is described, never inlined: base64 would blow the
output cap and tell the model nothing.
"""

from __future__ import annotations

import json

import mcp_types as types

__all__ = ["flatten_result"]


def _describe(block: object) -> str:
    if isinstance(block, types.TextContent):
        return block.text
    if isinstance(block, types.ImageContent | types.AudioContent):
        kind = "image" if isinstance(block, types.ImageContent) else "audio"
        return f"[{kind} {block.mime_type}, {len(block.data) * 3 // 4} bytes]"
    if isinstance(block, types.ResourceLink):
        return f"[resource {block.name}: {block.uri}]"
    if isinstance(block, types.EmbeddedResource):
        resource = block.resource
        if isinstance(resource, types.TextResourceContents):
            return resource.text
        return f"[binary resource {resource.uri} {resource.mime_type or ''}]".replace(" ]", "]")
    return f"[{type(block).__name__}]"


def flatten_result(result: types.CallToolResult, max_chars: int) -> tuple[str, bool]:
    """Return (text, truncated). Falls back to the structured content when there is no text."""
    text = "\n".join(_describe(block) for block in result.content)
    if not text and result.structured_content is not None:
        text = json.dumps(result.structured_content, ensure_ascii=False, default=str)
    if len(text) <= max_chars:
        return text, False
    shown = text[:max_chars]
    return f"{shown}\n… [output truncated: {max_chars:,} of {len(text):,} characters shown]", True
