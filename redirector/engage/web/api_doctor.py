"""``GET /api/v1/doctor/client-address`` (API key): what client address this request came
out as, for ``engage doctor``'s proxy-chain check (engage.admin.doctor_proxy). Only the
caller's own request is described (engage.clientaddr)."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from engage import clientaddr
from engage.web.auth import api_key_required
from engage.web.extension import engage

doctor = Blueprint("doctor", __name__)


@doctor.route(clientaddr.ROUTE)
@api_key_required
def client_address() -> Response:
    return jsonify(results=clientaddr.describe(request.environ, request.remote_addr or "",
                                               engage().settings.proxy_hops))
