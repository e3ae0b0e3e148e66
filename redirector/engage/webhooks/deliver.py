"""POST one batch (or the validation ping) to a webhook's target, with its headers and auth.

Headers: ``Content-Type: application/json``, ``X-MessageSystems-Batch-ID`` (the same on
every retry of a batch, so a receiver can drop a batch it already has), the webhook's
custom headers, ``Authorization`` (basic or OAuth2 bearer) and the signature: Standard
Webhooks' ``webhook-id`` (the batch id), ``webhook-timestamp`` and, with a secret,
``webhook-signature``, each also as ``svix-*``; or, for ``signature_scheme = engage``
with a secret, ``X-Engage-Signature`` alone. Each attempt is signed afresh. An OAuth2
target answering 400 or 401 gets one more try at once with a freshly fetched token.
Unless ``allow_private`` (``[webhooks] allow_private_targets``), the target and the token
endpoint must be public addresses (engage.webhooks.targets).
"""
from __future__ import annotations

from engage.webhooks import auth, signature, transport
from engage.webhooks.config import Webhook
from engage.webhooks.payload import ping_body
from engage.webhooks.queue import new_batch_id

BATCH_HEADER = "X-MessageSystems-Batch-ID"


def headers_for(hook: Webhook, body: bytes, batch_id: str,
                now: float | None = None) -> dict[str, str]:
    headers = dict(hook.custom_headers)
    headers["Content-Type"] = "application/json"
    headers[BATCH_HEADER] = batch_id
    if hook.signature_scheme == "engage":
        if hook.signing_secret:
            headers[signature.HEADER] = signature.sign(hook.signing_secret, body, now)
    else:
        headers.update(signature.standard_headers(hook.signing_secret, batch_id, body, now))
    return headers


def send(hook: Webhook, body: bytes, batch_id: str, tokens: auth.Tokens,
         timeout: float, allow_private: bool = False) -> transport.Answer:
    """One attempt: the target's answer (status 0 when it, or the token endpoint, failed)."""
    answer = _post(hook, body, batch_id, tokens, timeout, allow_private)
    if hook.auth_type == "oauth2" and answer.status in (400, 401):
        tokens.drop(hook.id)
        answer = _post(hook, body, batch_id, tokens, timeout, allow_private)
    return answer


def ping(hook: Webhook, timeout: float, allow_private: bool = False) -> transport.Answer:
    """SparkPost's validation request, ``[{"msys": {}}]`` (``events`` format:
    ``{"type": "ping", ...}``); the target must answer 2xx."""
    return send(hook, ping_body(hook.format), new_batch_id(), auth.Tokens(), timeout,
                allow_private)


def _post(hook: Webhook, body: bytes, batch_id: str, tokens: auth.Tokens,
          timeout: float, allow_private: bool) -> transport.Answer:
    headers = headers_for(hook, body, batch_id)
    try:
        authorization = auth.authorization(hook, tokens, timeout, allow_private)
    except auth.AuthError as exc:
        return transport.Answer(0, 0, error=f"oauth2: {exc}")
    if authorization:
        headers["Authorization"] = authorization
    return transport.post(hook.target, body, headers, timeout, allow_private)
