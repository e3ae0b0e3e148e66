"""Flask test clients that close an answer's body before they return it, as gunicorn
does before the connection serves its next request: a click's event is appended when
its 302's body is closed (engage.web.answered), so a test reads it right after."""
from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient


class ClosingClient(FlaskClient):
    """``buffered`` by default: werkzeug then reads the body whole and calls its close()."""

    def open(self, *args: Any, buffered: bool = True, **kwargs: Any) -> Any:
        return super().open(*args, buffered=buffered, **kwargs)


def install() -> None:
    """Every app's ``test_client()`` is a ClosingClient (Flask.test_client_class)."""
    Flask.test_client_class = ClosingClient
