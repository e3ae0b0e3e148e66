"""Python's own email test corpus through plan_message: no exception, and either the
body is left alone or the independent oracle accepts the rewrite.

The corpus (msg_*.txt: odd boundaries, missing headers, digests, reports, signed
messages, broken MIME) ships in Debian's libpython3.X-testsuite package, which the
project's install script installs. Each file is turned into what a milter receives:
CRLF line ends, headers split off as (name, raw value with its folding kept), the
body as bytes.
"""
from __future__ import annotations

import glob
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import oracle  # noqa: E402
from engage.settings import Settings  # noqa: E402
from engage_milter.plan import Envelope, plan_message  # noqa: E402

TRACKING = "https://t.example/t"
KEY = "Kx7Qm2Vp9Rs4Tw6YaB3cD4"  # a fixed message key (22 characters)
CORPUS_GLOB = "/usr/lib/python3*/test/test_email/data/"


def _corpus_dir() -> str | None:
    found = sorted(d for d in glob.glob(CORPUS_GLOB) if glob.glob(os.path.join(d, "msg_*.txt")))
    return found[-1] if found else None


CORPUS = _corpus_dir()
FILES = sorted(glob.glob(os.path.join(CORPUS, "msg_*.txt"))) if CORPUS else []
MISSING = ("Python's email test corpus is not installed (Debian: apt-get install "
           "libpython3-testsuite, or libpython3.11-testsuite; looked in " + CORPUS_GLOB + ")")


def crlf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def through_plan(raw: bytes, settings: Settings, fold: str = "\r\n"):
    headers, body = oracle.milter_view(raw, fold=fold)
    plan = plan_message(headers, body, Envelope(queue_id="corpus"), settings, KEY)
    return plan, oracle.apply_changes(raw, plan.delete_headers, plan.body)


def check(raw: bytes, settings: Settings, fold: str = "\r\n"):
    plan, rewritten = through_plan(raw, settings, fold)
    assert plan.reject is None  # no X-MSYS-API in the corpus, so nothing to reject
    if plan.body is None:
        assert rewritten == raw
        assert plan.template is None
    else:
        stored = [link.url for link in plan.template.links]
        oracle.assert_only_tracking_changed(raw, rewritten, TRACKING, stored)
    return plan


@pytest.mark.skipif(not FILES, reason=MISSING)
def test_corpus_is_there():
    assert len(FILES) >= 40


@pytest.mark.skipif(not FILES, reason=MISSING)
@pytest.mark.parametrize("name", [os.path.basename(f) for f in FILES] or ["(none)"])
def test_corpus_message(name):
    raw = crlf(Path(CORPUS, name).read_bytes())
    check(raw, Settings(tracking_url=TRACKING))


@pytest.mark.skipif(not FILES, reason=MISSING)
@pytest.mark.parametrize("name", [os.path.basename(f) for f in FILES] or ["(none)"])
def test_corpus_message_postfix_folding_and_x_msys_api(name):
    """The same with Postfix's LF-folded header values and an X-MSYS-API header, which
    must be deleted whatever happens to the body."""
    raw = crlf(Path(CORPUS, name).read_bytes())
    headers = oracle.split_message(raw)[0]
    cut = raw.index(headers[-1][1]) + len(headers[-1][1]) if headers else 0  # msg_19 has no headers
    raw = raw[:cut] + b'X-MSYS-API: {"campaign_id": "corpus",\r\n "tags": ["python"]}\r\n' + raw[cut:]
    plan, rewritten = through_plan(raw, Settings(tracking_url=TRACKING), fold="\n")
    assert plan.reject is None
    assert plan.delete_headers == [("X-MSYS-API", 1)]
    if plan.body is None:
        assert plan.template is None
    else:
        assert plan.template.campaign_id == "corpus"
        stored = [link.url for link in plan.template.links]
    oracle.assert_only_tracking_changed(raw, rewritten, TRACKING, stored if plan.body is not None else [])


@pytest.mark.skipif(not FILES, reason=MISSING)
def test_corpus_some_messages_are_rewritten():
    """The corpus is not all skipped: a few messages carry URLs or HTML."""
    rewritten = [os.path.basename(f) for f in FILES
                 if through_plan(crlf(Path(f).read_bytes()), Settings(tracking_url=TRACKING))[0].body is not None]
    assert len(rewritten) >= 3, rewritten


def test_the_corpus_is_installed():
    """Skips above would hide a corpus that went missing: here that is a failure (CI and
    ``make test`` install it), unless a developer opts out on a system without it."""
    if not FILES and os.environ.get("ENGAGE_ALLOW_MISSING_CORPUS") == "1":
        pytest.skip(MISSING)
    assert FILES, MISSING
