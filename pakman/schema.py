"""The JSON Schema of instellar.yml, made from :data:`pakman.config.INSTELLAR`.

The declaration the validator walks is the only source: nothing here names a key.
``pakman schema`` prints it; ``pakman/instellar.schema.json`` is the committed copy that
editors load (``# yaml-language-server: $schema=...``).
"""

from __future__ import annotations

import json
from typing import Any

from pakman.config import INSTELLAR, Key

SCHEMA_URL = "https://raw.githubusercontent.com/upmaru/pakman/main/pakman/instellar.schema.json"
_TYPES = {
    "text": ["string", "number"],
    "string": ["string"],
    "boolean": ["boolean"],
    "list": ["array"],
    "mapping": ["object"],
}


def _node(key: Key, *, nullable: bool = False) -> dict[str, Any]:
    types = [*_TYPES[key.kind], *(["null"] if nullable else [])]
    node: dict[str, Any] = {"type": types[0] if len(types) == 1 else types}
    if key.doc:
        node["description"] = key.doc
    if key.choices:
        node["enum"] = [*key.choices, *([None] if nullable else [])]
    if key.pattern is not None:
        node["pattern"] = f"^(?:{key.pattern.pattern})$"
    if key.max_length is not None:
        node["maxLength"] = key.max_length
    if key.items is not None:
        node["items"] = _node(key.items)
    if key.min_items:
        node["minItems"] = key.min_items
    if key.keys is not None:
        node["properties"] = {
            name: _node(child, nullable=child.nullable and name not in key.required)
            for name, child in key.keys.items()
        }
        node["additionalProperties"] = False
    if key.required:
        node["required"] = list(key.required)
    return node


def generate() -> dict[str, Any]:
    """The schema (JSON Schema 2020-12) as a dict."""
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_URL,
        "title": "instellar.yml",
        **_node(INSTELLAR),
    }
    # The default type (no type:, or type: default) runs a service: run and one service.
    schema["if"] = {
        "properties": {"type": {"enum": ["static", "custom"]}},
        "required": ["type"],
    }
    schema["else"] = {
        "required": ["run"],
        "properties": {
            "run": {
                "type": "object",
                "required": ["services"],
                "properties": {"services": {"minItems": 1}},
            }
        },
    }
    return schema


def text() -> str:
    """The schema as ``pakman schema`` prints it and the committed file holds it."""
    return json.dumps(generate(), indent=2) + "\n"
