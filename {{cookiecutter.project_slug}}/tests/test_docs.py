"""/docs and /redoc work offline: every asset they need is served by the atom."""

import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.api import mounting
from {{ cookiecutter.package_name }}.api.app import get_app
from {{ cookiecutter.package_name }}.config import Settings

ASSET_RE = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


@pytest.mark.parametrize(
    ("page", "assets"),
    [
        ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"}),
        ("/redoc", {"redoc.standalone.js", "favicon.png"}),
    ],
)
def test_pages_use_only_local_assets(client: TestClient, page: str, assets: set[str]) -> None:
    """The page references no other host, and each asset it loads is served here."""
    html = client.get(page).text
    assert "http://" not in html
    assert "https://" not in html
    urls = ASSET_RE.findall(html)
    assert {url.rsplit("/", 1)[1] for url in urls} == assets
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        assert len(response.content) > 4000, url


def test_openapi_lists_the_routes(client: TestClient, prefix: str) -> None:
    """The schema the pages load lists the atom's routes."""
    paths = client.get("/openapi.json").json()["paths"]
    assert f"{prefix}/detect" in paths
    assert f"{prefix}/v1/health/ping" in paths


def test_errors_are_documented_as_json(client: TestClient, prefix: str) -> None:
    """Every documented error is the JSON envelope, on the text/plain metrics route too."""
    paths = client.get("/openapi.json").json()["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if not status.startswith("2"):
                    assert list(response["content"]) == ["application/json"], (path, method)
    assert set(paths[f"{prefix}/metrics"]["get"]["responses"]) == {"200", "500"}


def test_a_metrics_error_is_the_json_envelope(
    client: TestClient, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing scrape answers what the schema documents: 500 with the JSON envelope."""
    monkeypatch.setattr(client.app.state.metrics, "render", lambda: 1 / 0)
    response = client.get(f"{prefix}/metrics")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"code": 500, "msg": "Internal Server Error", "data": None}


def test_docs_switch_off(make_settings: Callable[..., Settings]) -> None:
    """DOCS_SWITCH=false removes /docs, /redoc and the schema."""
    with TestClient(get_app(make_settings(docs_switch=False), model_loaders={})) as client:
        for path in ("/docs", "/redoc", "/openapi.json", "/docs-assets/swagger-ui.css"):
            response = client.get(path)
            assert response.status_code == 404, path
            assert response.json()["code"] == 404


def test_flat_routes_document_and_answer_as_included_ones(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """include_flat gives the same OpenAPI document as include_router, and the same answers."""
    settings = make_settings()
    flat = get_app(settings, model_loaders={})
    monkeypatch.setattr(
        mounting,
        "include_flat",
        lambda app, router, prefix: app.include_router(router, prefix=prefix),
    )
    included = get_app(settings, model_loaders={})
    assert flat.openapi() == included.openapi()
    assert sum(type(r).__name__ == "_IncludedRouter" for r in flat.router.routes) == 0
    assert sum(type(r).__name__ == "_IncludedRouter" for r in included.router.routes) >= 2
    with TestClient(flat) as a, TestClient(included) as b:
        for path in ("/v1/health/ping", "/v1/health/ready", "/nowhere"):
            url = settings.atom_api_prefix + path
            assert a.get(url).json() == b.get(url).json()
            assert a.get(url).status_code == b.get(url).status_code
        url = settings.atom_api_prefix + "/detect"
        assert a.put(url).status_code == b.put(url).status_code == 405
