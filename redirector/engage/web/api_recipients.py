"""The forget API: ``POST /api/v1/recipients/forget`` with ``{"recipient": "<address>"}``
erases that recipient (engage.erasure.forget) and answers a JSON summary."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from engage.erasure.forget import Forgetter, address_from_json
from engage.web.auth import api_key_required
from engage.web.errors import ApiError
from engage.web.extension import engage

recipients = Blueprint("recipients", __name__)


@recipients.route("/api/v1/recipients/forget", methods=["POST"])
@api_key_required
def forget_recipient() -> Response:
    services = engage()
    try:
        address = address_from_json(request.get_data())
    except ValueError as exc:
        raise ApiError(400, str(exc), "invalid parameter", "recipient") from None
    forgetter = Forgetter(services.client, services.settings.key_prefix)
    return jsonify(results=forgetter.forget(address).as_dict())
