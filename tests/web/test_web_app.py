"""The app as Flask people write it (Flask test client, real Redis): one error handler that
answers SparkPost's JSON error shape under /api/ (404 and 405 included) and the HTML pages
elsewhere; services in app.extensions; the blueprints under every tracking prefix."""
from __future__ import annotations

from pathlib import Path

import pytest

from engage.web.extension import EXTENSION, Engage

WEB = Path(__file__).resolve().parents[2] / "redirector" / "engage" / "web"
KEY = {"Authorization": "test-key-1-abcdefghijkl"}


def error_of(response):
    assert response.mimetype == "application/json", response.data
    [error] = response.json["errors"]
    return error


@pytest.mark.parametrize("path,method,status,code", [
    ("/api/v1/nothing-here", "get", 404, "1600"),
    ("/api/v1/events/message", "post", 405, "1102"),
    ("/api/v1/recipients/forget", "get", 405, "1102"),
    ("/api/v1/events/message?per_page=0", "get", 400, "1200"),
    ("/api/v1/metrics/deliverability/no-such-group?from=2024-01-01T00:00", "get", 404, "1600"),
])
def test_api_errors_are_sparkposts_json_shape(client, path, method, status, code):
    response = getattr(client, method)(path, headers=KEY)
    assert response.status_code == status
    error = error_of(response)
    assert error["code"] == code
    assert error["message"] and error["description"]


def test_a_405_under_the_api_says_what_is_allowed(client):
    response = client.delete("/api/v1/recipients/forget", headers=KEY)
    assert response.status_code == 405 and "POST" in response.headers["Allow"]


def test_api_errors_under_a_tracking_prefix_are_json_too(make_app):
    client = make_app(tracking_url="https://click.example.com/t").test_client()
    assert error_of(client.get("/t/api/v1/nothing", headers=KEY))["code"] == "1600"
    assert error_of(client.get("/t/api/v1/events/message"))["message"] == "Unauthorized."


def test_a_missing_key_is_401_unauthorized_with_code(client):
    response = client.get("/api/v1/events/message")
    assert response.status_code == 401
    assert error_of(response) == {
        "message": "Unauthorized.", "code": "1100",
        "description": "a valid API key is required in the Authorization header"}


@pytest.mark.parametrize("path,method,status", [
    ("/nothing", "get", 404), ("/c/", "get", 404), ("/o/abc", "post", 405),
    ("/v1/track/click/x?url=https://example.com/&sig=bad", "get", 400)])
def test_errors_outside_the_api_are_the_html_pages(client, path, method, status):
    response = getattr(client, method)(path)
    assert response.status_code == status
    assert response.mimetype == "text/html" and b"<h1>" in response.data


def test_redis_down_is_a_503_page_for_a_click_and_json_for_the_api(make_app, web_redis, mail):
    message = mail("https://example.com/")
    client = make_app().test_client()
    web_redis.stop()
    try:
        page = client.get(f"/c/{message.click(0)}!")  # past the click path: Flask's view
        api = client.get(f"/api/v1/messages/{message.open}", headers=KEY)
        pixel = client.get(f"/o/{message.open}")
    finally:
        web_redis.start()
    assert (page.status_code, page.mimetype) == (404, "text/html")  # not a token at all
    assert api.status_code == 503 and error_of(api)["message"] == "unavailable"
    assert (pixel.status_code, pixel.mimetype) == (200, "image/gif")


def test_services_live_in_app_extensions(make_app):
    app = make_app()
    services = app.extensions[EXTENSION]
    assert isinstance(services, Engage)
    assert services.settings.api_keys == ("test-key-1-abcdefghijkl",)


def test_blueprints_are_registered_once_per_tracking_prefix(make_app):
    app = make_app(tracking_url="https://click.example.com/t",
                   tracking_domains={"brand.example": "https://links.brand.example"})
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    for path in ("/c/<token>", "/v1/track/click/<tracking_id>", "/api/v1/events/message",
                 "/api/v1/recipients/forget", "/healthz"):
        assert {path, f"/t{path}"} <= rules, path


def test_views_are_module_functions_not_closures(make_app):
    app = make_app(dashboard_enabled=True, dashboard_users=(("ada", "pbkdf2:sha256:1$s$00"),))
    closures = {name: view.__qualname__ for name, view in app.view_functions.items()
                if "<locals>" in view.__qualname__}
    assert closures == {}
    assert len(app.view_functions) >= 13


def test_no_web_module_is_over_300_lines():
    sizes = {module.name: len(module.read_text().splitlines()) for module in WEB.glob("*.py")}
    assert max(sizes.values()) <= 300, sizes


def test_the_api_key_check_is_written_once():
    """Every /api/ view goes through api_key_required: only auth.py reads credentials."""
    readers = [module.name for module in WEB.glob("*.py")
               if '"Authorization"' in module.read_text() and module.name != "auth.py"]
    assert readers == []
