"""Every nginx snippet of docs/ and etc/: `nginx -t` accepts it in a minimal nginx.conf,
and requests through it reach a real redirector (gunicorn, Redis) as they should.

- A site (an ``nginx http`` snippet with its own ``server`` blocks, such as
  etc/nginx/engage-redirector.conf) runs as written, with only what an operator fills
  in changed: its listen ports (127.0.0.1 and free ports; the IPv6 listens dropped), the
  upstream's address (the test redirector) and the certificate paths (a throw-away
  self-signed certificate). Plain HTTP must redirect to https; over TLS /healthz, a
  click and a pixel reach the redirector, and the client address it logs is the one
  nginx saw, not the X-Forwarded-For the client forged.
- The other snippets of a page (``nginx server`` directives and ``nginx http`` ones
  such as a log_format) go together into the sandbox's server block
  (etc/nginx/sandbox-nginx.conf.in), with log paths moved into the test's directory: a
  `deny all` location must answer 403, an access_log must get its lines.
"""
from __future__ import annotations

import http.client
import re
import ssl
import subprocess
import time
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

import pytest

from support.procs import (
    free_port,
    http_get,
    listening,
    nginx_binary,
    render_nginx_conf,
    stop_process,
    tail,
)
from support.snippets import Snippet, snippets

HOST = "click.example.com"
FORGED = "203.0.113.9"

NGINX_CONF = """\
worker_processes 1;
pid nginx.pid;
error_log error.log notice;
events {{ worker_connections 64; }}
http {{
    default_type application/octet-stream;
    access_log access.log;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    proxy_max_temp_file_size 0;
{snippet}
}}
"""


def is_site(snippet: Snippet) -> bool:
    return snippet.kind == "nginx http" and re.search(r"^\s*server\s*\{", snippet.text, re.M) is not None


ALL = snippets("nginx http") + snippets("nginx server")
SITES = [s for s in ALL if is_site(s)]
PARTS: dict[str, list[Snippet]] = defaultdict(list)
for _snippet in ALL:
    if not is_site(_snippet):
        PARTS[_snippet.where.split(":")[0]].append(_snippet)


@pytest.fixture
def nginx_dir(engage_tmp: Path, request) -> Path:
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (run scripts/install-deps)")
    path = engage_tmp / f"nginx-snippet-{free_port()}"
    (path / "tmp").mkdir(parents=True)
    return path


class Nginx:
    """nginx -t, then nginx in the foreground with a given nginx.conf under ``prefix``."""

    def __init__(self, prefix: Path, conf: str) -> None:
        self.prefix = prefix
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(conf)
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def argv(self, *extra: str) -> list[str]:
        return [str(nginx_binary()), "-c", str(self.conf), "-p", f"{self.prefix}/",
                "-e", str(self.prefix / "error.log"), *extra]

    def test(self) -> None:
        done = subprocess.run(self.argv("-t"), capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and "test is successful" in done.stderr, (
            f"nginx -t refused it:\n{done.stderr}\n--- nginx.conf:\n{self.conf.read_text()}")

    def start(self, port: int) -> "Nginx":
        self.proc = subprocess.Popen(self.argv("-g", "daemon off;"), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + 20
        while not listening(port):
            assert self.proc.poll() is None and time.monotonic() < deadline, (
                f"nginx did not listen on {port}:\n{tail(self.prefix / 'error.log')}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


@pytest.fixture
def nginx_runs():
    started: list[Nginx] = []
    yield started
    for server in started:
        server.stop()


def certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", f"/CN={HOST}",
                    "-addext", f"subjectAltName=DNS:{HOST}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def adapt_site(text: str, ports: Mapping[str, int], upstream: str, cert: Path, key: Path) -> str:
    """What an operator fills in, filled in for the test; fails if the site lacks any."""
    steps = [
        (r"^(\s*)listen\s+\[::\]:\d+[^;]*;[ \t]*\n", lambda m: ""),
        (r"^(\s*)listen\s+(\d+)\b", lambda m: f"{m[1]}listen 127.0.0.1:{ports[m[2]]}"),
        (r"^(\s*)server\s+127\.0\.0\.1:8080\s*;", lambda m: f"{m[1]}server {upstream};"),
        (r"^(\s*)ssl_certificate\s+\S+;", lambda m: f"{m[1]}ssl_certificate {cert};"),
        (r"^(\s*)ssl_certificate_key\s+\S+;", lambda m: f"{m[1]}ssl_certificate_key {key};"),
    ]
    for pattern, replace in steps:
        text, count = re.subn(pattern, replace, text, flags=re.M)
        assert count, f"the site has no line matching {pattern!r}"
    return text


def https_get(port: int, path: str, cert: Path, headers: Mapping[str, str] = {},
              source: Optional[str] = None) -> tuple[int, Mapping[str, str], bytes]:
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False  # connected by address; the chain is still verified
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10,
                                             source_address=(source, 0) if source else None)
    try:
        connection.request("GET", path, headers={"Host": HOST, **headers})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def test_the_docs_have_nginx_snippets():
    assert SITES and PARTS, (SITES, PARTS)


@pytest.mark.parametrize("snippet", SITES, ids=[s.where for s in SITES])
def test_site_passes_requests_to_the_redirector(snippet, nginx_dir, nginx_runs, start_redirector):
    redirector = start_redirector({"ENGAGE_PROXY_HOPS": "1"})
    ports = {"80": free_port(), "443": free_port()}
    cert, key = certificate(nginx_dir)
    conf = NGINX_CONF.format(snippet=adapt_site(snippet.text, ports, f"127.0.0.1:{redirector.port}",
                                                cert, key))
    nginx = Nginx(nginx_dir, conf)
    nginx.test()
    nginx_runs.append(nginx.start(ports["443"]))

    status, headers, _ = http_get(f"http://127.0.0.1:{ports['80']}/c/abcdef", {"Host": HOST})
    assert status == 301 and headers["Location"] == f"https://{HOST}/c/abcdef"

    status, _, body = https_get(ports["443"], "/healthz", cert)
    assert status == 200 and b'"redis": "ok"' in body.replace(b'":"', b'": "')

    status, headers, _ = https_get(ports["443"], "/o/unknownpixeltoken", cert)
    assert status == 200 and headers["Content-Type"] == "image/gif"

    status, headers, body = https_get(ports["443"], "/c/forgedclicktoken", cert,
                                      {"X-Forwarded-For": FORGED}, source="127.0.0.2")
    assert status == 404 and "Location" not in headers and b"<html" in body.lower()
    deadline = time.monotonic() + 5
    while "ip=127.0.0.2 " not in redirector.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [x for x in redirector.log_text().splitlines() if "path=/c/forged" in x]
    assert lines and all("ip=127.0.0.2 " in x for x in lines), lines
    assert FORGED not in redirector.log_text()


@pytest.mark.parametrize("page", sorted(PARTS), ids=sorted(PARTS))
def test_snippets_work_inside_the_tracking_server(page, nginx_dir, nginx_runs, start_redirector):
    redirector = start_redirector({"ENGAGE_PROXY_HOPS": "1"})
    port = free_port()
    http_level = "".join(s.text for s in PARTS[page] if s.kind == "nginx http")
    server_level = "".join(s.text for s in PARTS[page] if s.kind == "nginx server")
    conf = render_nginx_conf(f"127.0.0.1:{port}", f"127.0.0.1:{redirector.port}")
    conf = conf.replace("http {\n", "http {\n" + http_level, 1)
    conf = conf.replace("server_name _;\n", "server_name _;\n" + server_level, 1)
    conf = conf.replace("/var/log/nginx/", f"{nginx_dir}/")
    nginx = Nginx(nginx_dir, conf)
    nginx.test()
    nginx_runs.append(nginx.start(port))
    url = f"http://127.0.0.1:{port}"

    assert http_get(f"{url}/healthz")[0] == 200
    assert http_get(f"{url}/o/unknownpixeltoken")[0] == 200
    denied = re.findall(r"location\s+(\S+)\s*\{[^}]*\bdeny\s+all\s*;", server_level)
    for prefix in denied:  # 127.0.0.1 is in none of the allowed networks of the docs
        assert http_get(f"{url}{prefix}")[0] == 403, prefix
    for path, fmt in re.findall(r"access_log\s+(\S+)\s+(\w+)\s*;", server_level):
        log_file = Path(path.replace("/var/log/nginx/", f"{nginx_dir}/"))
        logged = _read_when_written(log_file, '"GET /o/unknownpixeltoken"')
        assert '"GET /o/unknownpixeltoken"' in logged, (fmt, logged)
        if "$remote_addr" not in http_level:
            assert "127.0.0.1" not in logged, logged


def _read_when_written(path: Path, wanted: str, timeout: float = 5.0) -> str:
    """nginx writes its access log after the answer: wait for the line, not a sleep."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if wanted in text:
            return text
        time.sleep(0.05)
    return text
