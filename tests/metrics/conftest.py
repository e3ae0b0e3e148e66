"""Fixtures for the metrics API's tests: support.webapp's (the Flask app on the session's Redis)."""
from support.webapp import *  # noqa: F403  (fixtures: web_redis rclient settings make_app client events mail)
