"""Why a tracking URL's TLS certificate is refused, in the words an operator acts on.

``explain(reason, url)`` turns the error urllib raised into (cause, fix) when it is about
TLS: a certificate that does not cover the tracking name (then the names it does cover,
read from a second handshake that checks the chain but not the name), an expired one, or
one that no public CA signed. Recipients' browsers refuse the same certificates, so each of
these loses every click on that name. Standard library only.
"""
from __future__ import annotations

import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

HOSTNAME_MISMATCH, EXPIRED = 62, 10   # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_CERT_HAS_EXPIRED
WEBROOT = "/var/www/letsencrypt"      # the ACME location of etc/nginx/engage-redirector.conf
RELOAD = "systemctl reload nginx"


def explain(reason: object, url: str, timeout: float = 5.0) -> tuple[str, tuple[str, ...]] | None:
    if not isinstance(reason, ssl.SSLCertVerificationError):
        return None
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    refused = f"its TLS certificate is refused ({reason.verify_message})"
    if reason.verify_code == HOSTNAME_MISMATCH:
        names = covered_names(host, port, timeout)
        listed = ", ".join(names) if names else "other names"
        wanted = [*names, host] if names else [host]
        return (f"{refused}: the certificate nginx serves covers {listed}, not {host}, so "
                "browsers refuse every click and open on it",
                (certbot(wanted, expand=bool(names)), RELOAD,
                 "(ssl_certificate in the engage-redirector site must be that certificate)"))
    if reason.verify_code == EXPIRED:
        return (f"{refused}: browsers refuse every click and open on {host}",
                ("certbot renew", RELOAD))
    return (f"{refused}: it is not signed by a CA that recipients' browsers trust, so they "
            f"refuse every click and open on {host}", (certbot([host]), RELOAD))


def certbot(names: list[str], expand: bool = False) -> str:
    domains = " ".join(f"-d {name}" for name in dict.fromkeys(names))
    return f"certbot certonly --webroot -w {WEBROOT}{' --expand' if expand else ''} {domains}"


def covered_names(host: str, port: int, timeout: float) -> list[str]:
    """The DNS names of the certificate HOST:PORT serves, when its chain is trusted."""
    context = ssl.create_default_context()
    context.check_hostname = False  # the chain is still verified: getpeercert() then decodes
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=host) as tls:
            cert: dict[str, Any] = dict(tls.getpeercert() or {})
    except (OSError, ssl.SSLError):
        return []
    names = [str(pair[1]) for pair in cert.get("subjectAltName", ()) if pair[0] == "DNS"]
    return names or [str(pair[1]) for rdn in cert.get("subject", ()) for pair in rdn
                     if pair[0] == "commonName"]
