"""Every API route is declared once, with its OpenAPI entry; the document follows the routes."""

from __future__ import annotations

from starlette.routing import Route

from surge.api.openapi import ApiRoute, document
from surge.app import routes


def test_every_api_route_carries_its_operation() -> None:
    for route in routes():
        assert isinstance(route, Route)
        if route.path.startswith("/v1/") and route.methods != {"OPTIONS"}:
            assert isinstance(route, ApiRoute), f"{route.path} has no OpenAPI entry"


def test_the_document_has_one_operation_per_api_route_and_nothing_else() -> None:
    api = [route for route in routes() if isinstance(route, ApiRoute)]
    doc = document(routes())
    described = [(path, method) for path, ops in doc["paths"].items() for method in ops]
    assert sorted(described) == sorted((r.operation.path, r.operation.method) for r in api)
    assert all(":" not in path for path, _ in described)  # converters are not OpenAPI


def test_path_parameters_are_documented_without_their_converter() -> None:
    async def endpoint() -> None: ...

    route = ApiRoute("get", "/v1/things/{thing_id:int}", endpoint, "A thing")
    op = document([route])["paths"]["/v1/things/{thing_id}"]["get"]
    assert [p["name"] for p in op["parameters"]] == ["thing_id"]
    assert route.methods == {"GET", "HEAD"}
