"""The one place where failures become answers (``handle``, registered for Exception).

- A pixel route always answers the GIF, recorded or not.
- Under ``/api/`` and ``/dashboard/api/`` (below any tracking prefix), and for /healthz:
  SparkPost's error shape, ``{"errors": [{"message", "code", "description"[, "param"]}]}``,
  404 and 405 included. ``code`` is SparkPost's extended error code (engage.query.API_CODES:
  1100 permission, 1200 invalid parameter, 1300 invalid data format, 1400 required
  parameter missing, 1600 not found ...), else the HTTP status as text.
- Elsewhere the small HTML page of engage.web.clickpath.
Views raise ``ApiError`` (or abort) rather than build error answers themselves.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import redis
from flask import Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from engage.query import API_CODES, BadParameter, error_object
from engage.store.events import EventError
from engage.store.links import StoreError
from engage.web.clickpath import log_path, page
from engage.web.extension import engage
from engage.web.responses import gif

log = logging.getLogger("engage.web.app")

PIXEL_ENDPOINTS = ("open", "initial_open", "v1_open")
JSON_ROUTES = ("/api/", "/dashboard/api/")
MESSAGES = {400: "invalid parameter", 401: "Unauthorized.", 403: "Forbidden.",
            404: "Not found.", 405: "Method not allowed.", 413: "Request too large.",
            415: "Unsupported media type.", 429: "Too many requests.", 503: "unavailable"}
UNREACHABLE = "the event store is unreachable, try again"
PASSED_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")  # kept from the exception


class ApiError(HTTPException):
    """An error answer with SparkPost's fields; ``param`` names the offending parameter."""

    def __init__(self, status: int, description: str, message: str | None = None,
                 param: str | None = None, headers: Mapping[str, str] | None = None,
                 api_code: str | None = None) -> None:
        super().__init__(description)
        self.code = status
        self.api_code = api_code or API_CODES.get(status, str(status))
        self.message = message or MESSAGES.get(status, "error")
        self.param = param
        self.headers = dict(headers or {})

    def get_headers(self, *args: Any, **kwargs: Any) -> list[tuple[str, str]]:
        return [*super().get_headers(*args, **kwargs), *self.headers.items()]


def json_error(status: int, message: str, description: str,
               param: str | None = None, api_code: str | None = None) -> Response:
    error = error_object(message, description, api_code or API_CODES.get(status, str(status)), param)
    response = jsonify(errors=[error])
    response.status_code = status
    return response


def wants_json() -> bool:
    if (request.endpoint or "").rpartition(".")[2] == "healthz":
        return True
    return engage().route_of(request.path).startswith(JSON_ROUTES)


def as_api_error(exc: Exception) -> ApiError:
    """Any failure as status, message, description (and param)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, BadParameter):
        return ApiError(400, exc.description, param=exc.param, api_code=exc.code)
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        return ApiError(status, exc.description or "", MESSAGES.get(status, "error"))
    if isinstance(exc, (StoreError, EventError, redis.RedisError)):
        log.error("%s %s: redis unavailable: %s", request.method, log_path(request.path), exc)
        return ApiError(503, UNREACHABLE)
    log.exception("%s %s failed", request.method, log_path(request.path))
    return ApiError(500, "internal error", "error")


def handle(exc: Exception) -> Response:
    if (request.endpoint or "").rpartition(".")[2] in PIXEL_ENDPOINTS:
        g.event = "lost"
        log.error("open not recorded: %s", exc)
        return gif()
    error = as_api_error(exc)
    status = error.code or 500
    if wants_json():
        response = json_error(status, error.message, error.description or "", error.param,
                              error.api_code)
    else:
        response = Response(page(status), status=status, mimetype="text/html")
    if isinstance(exc, HTTPException):  # a 405's Allow, a 401's challenge ...
        for name, value in exc.get_headers():
            if name in PASSED_HEADERS:
                response.headers[name] = value
    return response
