"""The API docs page, rendered on the server from the OpenAPI spec (works with no internet).

FastAPI's default docs pages load Swagger UI or ReDoc from a CDN, which a self-hosted,
possibly offline install cannot rely on; a plain HTML rendering of the spec needs nothing.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

__all__ = ["render_api_docs"]

_environment = Environment(
    loader=PackageLoader("perfmark.web", "templates"), autoescape=select_autoescape(["html"])
)


def _type_of(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " | ".join(_type_of(option) for option in schema["anyOf"])
    if schema.get("type") == "array":
        return f"list[{_type_of(schema.get('items', {}))}]"
    if "enum" in schema:
        return " | ".join(repr(value) for value in schema["enum"])
    return str(schema.get("type", "any"))


def _ref_name(content: dict[str, Any] | None) -> str | None:
    if not content:
        return None
    schema = content.get("application/json", {}).get("schema", {})
    return _type_of(schema) if schema else None


def render_api_docs(spec: dict[str, Any], spec_url: str) -> str:
    """An HTML page listing every operation, its parameters and responses, and every schema."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path, methods in spec.get("paths", {}).items():
        for method, operation in methods.items():
            parameters = [
                {
                    "name": p.get("name"),
                    "location": p.get("in"),
                    "type": _type_of(p.get("schema", {})),
                    "required": p.get("required", False),
                    "description": p.get("description", ""),
                }
                for p in operation.get("parameters", [])
            ]
            responses = [
                {
                    "status": status,
                    "description": response.get("description", ""),
                    "schema": _ref_name(response.get("content")),
                }
                for status, response in sorted(operation.get("responses", {}).items())
            ]
            grouped[(operation.get("tags") or ["other"])[0]].append(
                {
                    "method": method,
                    "path": path,
                    "summary": operation.get("summary", ""),
                    "description": operation.get("description", ""),
                    "operation_id": operation.get("operationId", f"{method}-{path}"),
                    "parameters": parameters,
                    "body": _ref_name(operation.get("requestBody", {}).get("content")),
                    "responses": responses,
                }
            )
    schemas = []
    for name, schema in sorted(spec.get("components", {}).get("schemas", {}).items()):
        required = set(schema.get("required", []))
        fields = [
            {"name": field, "type": _type_of(definition), "required": field in required}
            for field, definition in schema.get("properties", {}).items()
        ]
        schemas.append((name, fields))
    return _environment.get_template("api_docs.html").render(
        spec=spec,
        spec_url=spec_url,
        tags=sorted(grouped),
        grouped=sorted(grouped.items()),
        schemas=schemas,
    )
