"""A human-readable API reference at ``/docs``, and ``/`` pointing to it.

Rendered once per process from the same OpenAPI document as ``/openapi.json``, so the two
cannot disagree. Until the staff console exists, ``/`` sends a person here rather than
answering a JSON 404.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from surge.api.openapi import document

_env = Environment(
    loader=PackageLoader("surge.api", "templates"), autoescape=select_autoescape(["html"])
)

_AUTH = {"secret": "secret (sk_…)", "publishable": "publishable (pk_…) or secret"}


def render(doc: dict[str, Any]) -> str:
    """The reference page of an OpenAPI document: operations grouped by their first path part."""
    sections: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path, methods in doc["paths"].items():
        parts = [p for p in path.split("/") if p and not p.startswith("{")]
        section = parts[1] if parts[:1] == ["v1"] and len(parts) > 1 else parts[0] if parts else "/"
        for method, op in methods.items():
            schemes = [name for req in op.get("security", []) for name in req]
            body = op.get("requestBody", {}).get("content", {})
            sections[section].append(
                {
                    "method": method,
                    "path": path,
                    "summary": op.get("summary", ""),
                    "auth": ", ".join(_AUTH.get(s, s) for s in schemes) or "none",
                    "parameters": op.get("parameters", []),
                    "body": ", ".join(body),
                }
            )
    return _env.get_template("reference.html").render(
        version=doc["info"]["version"],
        openapi=doc["openapi"],
        sections=sorted(sections.items()),
    )


async def reference(request: Request) -> Response:
    state = request.app.state
    if getattr(state, "reference_html", None) is None:
        state.reference_html = render(document(request.app.routes))
    return HTMLResponse(state.reference_html)


async def home(request: Request) -> Response:
    return RedirectResponse("/docs", status_code=307)


routes = [
    Route("/", home, methods=["GET"]),
    Route("/docs", reference, methods=["GET"]),
]
