"""``engage doctor``'s nginx check: is the engage-redirector site enabled?

Debian's nginx serves the sites linked into ``sites-enabled/``; a site copied into
``sites-available/`` and never linked leaves nginx's default site to answer the tracking
name, so every click gets nginx's 404. RPM's nginx reads ``conf.d/*.conf``. A site is
engage's when its file name or its text says ``engage``. Without an API key (so that the
proxy check cannot ask the redirector), the enabled site's text is checked for the
X-Forwarded-For line that ``[web] proxy_hops`` relies on.
"""
from __future__ import annotations

import os
import re

from engage import settings as config
from engage.admin.doctor_findings import ERROR, OK, SKIP, WARN, Finding, Options

EXAMPLE = "/usr/share/doc/engage-redirector/examples/engage-redirector.conf"
XFF_LINE = "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"
SETS_XFF = re.compile(r"^\s*proxy_set_header\s+X-Forwarded-For\s", re.IGNORECASE | re.MULTILINE)
MAX_SITE = 1 << 20


def check_nginx(settings: config.Settings, options: Options) -> list[Finding]:
    base = options.nginx_dir
    if not os.path.isdir(base):
        return [Finding(SKIP, "nginx", f"nginx is not installed here (no {base}): not checked")]
    available = _engage_sites(os.path.join(base, "sites-available"))
    enabled = _engage_sites(os.path.join(base, "sites-enabled"))
    enabled += _engage_sites(os.path.join(base, "conf.d"), ".conf")
    live = [path for path in enabled if os.path.exists(path)]
    if live:
        found = [Finding(OK, "nginx", f"the nginx site {live[0]} is enabled")]
        return found + ([] if settings.api_keys else _forwarded_for(settings, live[0]))
    if available:
        site = available[0]
        link = os.path.join(base, "sites-enabled", os.path.basename(site))
        return [Finding(ERROR, "nginx", f"the nginx site {site} is not enabled (nothing in "
                        f"{base}/sites-enabled points at it): nginx's default site answers the "
                        "tracking name instead, so every click gets 404 and opens are lost",
                        (f"ln -s {site} {link}", "nginx -t", "systemctl reload nginx"))]
    return [Finding(WARN, "nginx", f"no nginx site for engage in {base} (sites-enabled, conf.d): "
                    "unless another proxy serves the tracking name, clicks cannot reach the "
                    "redirector",
                    (f"cp {EXAMPLE} {base}/sites-available/",
                     "in it: server_name and ssl_certificate for your tracking names",
                     f"ln -s {base}/sites-available/engage-redirector.conf {base}/sites-enabled/",
                     "nginx -t", "systemctl reload nginx"))]


def _engage_sites(folder: str, suffix: str = "") -> list[str]:
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    return [os.path.join(folder, name) for name in names
            if name.endswith(suffix) and _is_engage(os.path.join(folder, name))]


def _is_engage(path: str) -> bool:
    if "engage" in os.path.basename(path):
        return True
    return "engage" in _read(path)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(MAX_SITE)
    except OSError:
        return ""


def _forwarded_for(settings: config.Settings, site: str) -> list[Finding]:
    sets_it = bool(SETS_XFF.search(_read(site)))
    where = settings.source
    if settings.proxy_hops and not sets_it:
        return [Finding(ERROR, "nginx", f"{site} does not set X-Forwarded-For, yet "
                        f"[web] proxy_hops = {settings.proxy_hops} makes the redirector take the "
                        "client's address from it: a client can forge its address (and so "
                        "dodge the click rate limit and falsify events)",
                        (f"in {site}, in the server block: {XFF_LINE}", "nginx -t",
                         "systemctl reload nginx"))]
    if sets_it and not settings.proxy_hops:
        return [Finding(ERROR, "nginx", f"{site} proxies to the redirector but [web] proxy_hops "
                        "is 0: the redirector takes nginx's address for every client, so all "
                        "clients share one click rate-limit bucket and events record no client "
                        "address", (f"in {where}: [web] proxy_hops = 1",
                                    "systemctl restart engage-redirector"))]
    return []
