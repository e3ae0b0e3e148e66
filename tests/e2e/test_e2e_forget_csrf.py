"""Cross-site request forgery against the forget API, in a real headless Chromium: the
browser logs in to the dashboard (HTTP Basic, as its prompt would), then opens an
attacker's page on another site (http://localhost:PORT against the tracking domain's
http://127.0.0.1:PORT) that sends a no-cors ``fetch`` with credentials and auto-submits
a ``text/plain`` form whose body is valid JSON, both to ``POST /api/v1/recipients/forget``
on the real redirector (gunicorn) behind the sandbox nginx. Chromium does send the
dashboard login with the form (nginx's access log names the user); the redirector
refuses both (the API key header only, JSON bodies only) and the recipient is still
there.
"""
from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Iterator
from html import escape
from typing import Any

import pytest
from werkzeug.security import generate_password_hash

from support.browser import start_chromium
from support.messages import register_message
from support.procs import free_port, http_get
from support.redisdump import traces

USER, PASSWORD = "ada", "dashboard test password"
JANE = "jane@example.org"
FORGET = "/api/v1/recipients/forget"
ATTACK = """<!doctype html><meta charset=utf-8><title>You won!</title>
<form method=POST action="{action}" enctype="text/plain">
<input type=hidden name='{{"recipient":"{address}","x":"' value='"}}'>
</form>
<script>
fetch("{action}", {{method: "POST", mode: "no-cors", credentials: "include",
  headers: {{"Content-Type": "text/plain"}}, body: JSON.stringify({{recipient: "{address}"}})}})
  .catch(() => null).then(() => {{ document.title = "sent"; document.forms[0].submit(); }});
</script>
"""


@pytest.fixture
def chromium(engage_tmp) -> Iterator[Any]:
    driver = start_chromium(engage_tmp)
    yield driver
    driver.quit()


@pytest.fixture
def attacker() -> Iterator[Any]:
    """An HTTP server for the attacker's page; ``page`` is set by the test."""
    class Page(http.server.BaseHTTPRequestHandler):
        page = b""

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(Page.page)

        def log_message(self, *args: Any) -> None:
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_an_attackers_page_cannot_make_a_logged_in_browser_forget_a_recipient(
        start_redirector, redis_client, chromium, attacker):
    from selenium.webdriver.support.ui import WebDriverWait

    users = f"{USER}:{generate_password_hash(PASSWORD, 'pbkdf2:sha256:20000')}"
    redirector = start_redirector({"ENGAGE_DASHBOARD_ENABLED": "yes",
                                   "ENGAGE_DASHBOARD_USERS": users}, nginx=True)
    base = redirector.public_url  # http://127.0.0.1:PORT (nginx)
    email_id = register_message(redis_client, "test:", JANE, "csrf")
    assert http_get(f"{base}/o/{email_id}")[0] == 200  # an open event that names her
    before = traces(redis_client, JANE)
    assert before

    # Logged in: the page loaded and its data routes answered with the browser's login.
    chromium.get(base.replace("http://", f"http://{USER}:{PASSWORD.replace(' ', '%20')}@")
                 + "/dashboard")
    WebDriverWait(chromium, 30, poll_frequency=0.2).until(
        lambda d: d.execute_script("return document.body.dataset.metrics") == "ready")

    # The attacker's page, on another site.
    Page = attacker.RequestHandlerClass
    Page.page = ATTACK.format(action=escape(f"{base}{FORGET}"), address=JANE).encode()
    chromium.get(f"http://localhost:{attacker.server_port}/")
    WebDriverWait(chromium, 30, poll_frequency=0.2).until(
        lambda d: d.current_url.endswith(FORGET))  # the form was submitted and answered
    answer = json.loads(chromium.find_element("tag name", "body").text)
    assert answer["errors"][0]["message"] == "Unauthorized."

    # Both requests reached the redirector and were refused; the form's carried the
    # browser's dashboard login (Chromium 156 sends none with the no-cors fetch).
    posts = [line for line in redirector.nginx.access_log_text().splitlines()
             if f"POST {FORGET}" in line]
    assert len(posts) == 2 and all('" 401 ' in line for line in posts), posts
    assert any(re.match(rf"\S+ - {USER} \[", line) for line in posts), posts
    refused = [line for line in redirector.log_text().splitlines()
               if f"method=POST path={FORGET} status=401" in line]
    assert len(refused) == 2, redirector.log_text()

    # Jane is still there.
    assert traces(redis_client, JANE) == before
    status, _, body = http_get(f"{base}/api/v1/messages/{email_id}",
                               {"Authorization": redirector.api_key})
    assert status == 200 and json.loads(body)["results"]["recipient"] == JANE
