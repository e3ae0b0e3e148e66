"""The forget API: ``POST /api/v1/recipients/forget`` with ``{"recipient": "<address>"}``
erases that recipient (engage.erasure.forget) and answers a JSON summary.

It changes state, so it must not be reachable from another site's page: it takes the
API key header only (never the browser's Basic login, engage.web.auth) and only a body
declared ``application/json`` (415 otherwise), which an HTML form cannot send and a
cross-site script cannot send without a CORS preflight this server never answers.
"""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from engage.erasure.forget import Forgetter, address_from_json
from engage.web.auth import api_key_required
from engage.web.errors import ApiError
from engage.web.extension import engage

JSON = "application/json"

recipients = Blueprint("recipients", __name__)


@recipients.route("/api/v1/recipients/forget", methods=["POST"])
@api_key_required
def forget_recipient() -> Response:
    if request.mimetype != JSON:
        raise ApiError(415, f"the body must be {JSON}: {{\"recipient\": \"<address>\"}}")
    try:
        address = address_from_json(request.get_data())
    except ValueError as exc:
        raise ApiError(400, str(exc), "invalid parameter", "recipient") from None
    services = engage()
    forgetter = Forgetter(services.client, services.settings.key_prefix,
                          high_water=services.settings.events_high_water)
    return jsonify(results=forgetter.forget(address).as_dict())
