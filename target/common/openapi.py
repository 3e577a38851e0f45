"""The pieces of an OpenAPI description that the wallet's and the node's share: schema helpers,
the project's error body and the security schemes of the admin token and LND's macaroon."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def obj(props: dict[str, str], required: list[str] | None = None) -> Schema:
    schema: Schema = {"type": "object", "properties": {k: {"type": v} for k, v in props.items()}}
    if required:
        schema["required"] = required
    return schema


def json_body(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def op(
    summary: str,
    responses: dict[str, Schema],
    *,
    body: Schema | None = None,
    security: list[dict[str, list[str]]] | None = None,
    params: list[Schema] | None = None,
) -> Schema:
    operation: Schema = {"summary": summary, "responses": responses}
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    if security is not None:
        operation["security"] = security
    if params:
        operation["parameters"] = params
    return operation


def path_param(name: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


ERROR = obj({"error": "string", "message": "string"}, ["error", "message"])
BAD = {"400": json_body(ERROR, "bad input; nothing moved")}
TOO_LARGE = {"413": json_body(ERROR, "body_too_large: the body is over the limit; nothing moved")}
ADMIN = [{"adminToken": []}]
ADMIN_DENIED = {"401": json_body(ERROR, "unauthorized: missing or wrong X-Admin-Token")}
MACAROON = [{"macaroon": []}]
SECURITY_SCHEMES: Schema = {
    "adminToken": {"type": "apiKey", "in": "header", "name": "X-Admin-Token"},
    "macaroon": {"type": "apiKey", "in": "header", "name": "Grpc-Metadata-macaroon"},
}
