"""The pymilter adapter: collect the message in callbacks, decide at end of message.

The only module that imports Milter. Failure policy, all of it here:
- invalid X-MSYS-API: the documented 550 5.6.0 reply;
- link store down: 421 4.3.3 (or, with on_store_error = accept, deliver untracked);
- a bug while planning: deliver unchanged but without X-MSYS-API, and log it;
- a rewrite past its deadline ([milter] plan_timeout), or one that failed or killed two
  workers: deliver unchanged, log it, and never rewrite that body again (pool.py);
- a failure while changing the message at the MTA: tempfail, so no half-changed
  message goes out (the client retries);
- with split_recipients on, the 2nd and later RCPT TO of a transaction: 452 4.5.3, so
  the client sends each recipient in a transaction of its own (own links, own rcpt_to).
Nothing here ever answers 5xx for our own failure.
"""
from __future__ import annotations

import logging
import signal
import time
from multiprocessing import resource_tracker
from typing import Any, Callable, Optional

import Milter

from engage.settings import Settings
from engage.store.links import LinkStore, StoreError
from engage.store.tokens import new_message_key

from . import replies
from .plan import Envelope, Plan, msys_deletions, plan_message
from .pool import Planner

log = logging.getLogger("engage_milter")
CHUNK = 65535  # libmilter's largest body chunk
MAX_BODY_BYTES = 64 * 1024 * 1024  # larger bodies pass through untracked


def _strip_brackets(address: str) -> str:
    address = address.strip()
    return address[1:-1] if address.startswith("<") and address.endswith(">") else address


def smtp_peer(hostaddr: Any) -> bool:
    """True for an SMTP client's (address, port, ...) with a real port; False for a
    connect an MTA makes up (port 0, unix or unknown family)."""
    return isinstance(hostaddr, tuple) and len(hostaddr) >= 2 and hostaddr[1] != 0


class TrackingMilter(Milter.Base):  # type: ignore[misc]  # pymilter has no stubs: Base is Any
    """One instance per SMTP connection (pymilter's factory); one message at a time."""

    _protocol: int  # Milter.Base's: the protocol steps negotiated with the MTA

    def __init__(self, settings: Settings, store: LinkStore,
                 planner: Optional[Callable[..., Plan]] = None) -> None:
        self.settings = settings
        self.store = store
        self.planner = planner
        self.split = False  # set by connect when split_recipients is on
        self._reset()

    def _reset(self) -> None:
        self.mail_from = ""
        self.rcpts: list[str] = []
        self.headers: list[tuple[str, str]] = []
        self.chunks: list[bytes] = []
        self.body_size = 0

    def negotiate(self, opts: list[int]) -> Any:
        offered = opts[1]
        verdict = super().negotiate(opts)
        if self.settings.split_recipients:
            # envrcpt may answer 452, so the MTA must wait for its reply: give up the
            # no-reply step @noreply negotiated. connect is wanted (see there).
            opts[1] = self._protocol = self._protocol & ~Milter.P_NR_RCPT
        else:
            # Mode off: the MTA skips connect and need not wait on RCPT, as before.
            opts[1] = self._protocol = self._protocol | (offered & Milter.P_NOCONNECT)
        return verdict

    @Milter.noreply  # type: ignore[untyped-decorator]  # pymilter has no stubs
    def connect(self, hostname: str, family: int, hostaddr: Any) -> Any:
        # Split only real SMTP clients, which re-send a recipient refused with 452.
        # Postfix's non_smtpd_milters (sendmail(1), pickup) fake a connect from port 0,
        # and cleanup(8) cannot refuse a single recipient: it would defer the whole
        # message again and again ("can't reject recipient in non-smtpd(8) submission").
        self.split = self.settings.split_recipients and smtp_peer(hostaddr)
        return Milter.CONTINUE

    def envfrom(self, mail_from: str, *params: str) -> Any:
        self._reset()
        self.mail_from = _strip_brackets(mail_from)
        return Milter.CONTINUE

    @Milter.noreply  # type: ignore[untyped-decorator]  # pymilter has no stubs
    def envrcpt(self, rcpt: str, *params: str) -> Any:
        # The MTA calls us only for recipients it accepted itself (P_RCPT_REJ is not
        # negotiated), so self.rcpts counts the transaction's accepted recipients.
        if self.split and self.rcpts:
            log.debug("%s RCPT answered 452: one recipient per transaction (split_recipients)",
                      self.getsymval("i") or "-")
            return self._reply(replies.TOO_MANY_RECIPIENTS, Milter.TEMPFAIL)
        self.rcpts.append(_strip_brackets(rcpt))
        return Milter.CONTINUE

    @Milter.noreply  # type: ignore[untyped-decorator]  # pymilter has no stubs
    @Milter.decode("bytes")  # type: ignore[untyped-decorator]  # pymilter has no stubs
    def header(self, name: str, value: bytes) -> Any:
        self.headers.append((name, value.decode("utf-8", "replace")))
        return Milter.CONTINUE

    @Milter.noreply  # type: ignore[untyped-decorator]  # pymilter has no stubs
    def body(self, chunk: bytes) -> Any:
        self.body_size += len(chunk)
        if self.body_size <= MAX_BODY_BYTES:
            self.chunks.append(chunk)
        return Milter.CONTINUE

    def eom(self) -> Any:
        queue_id = self.getsymval("i") or "-"
        plan = self._plan(queue_id)
        if plan.reject is not None:
            log.info("%s reject: %s", queue_id, plan.reject)
            return self._reply(plan.reject, Milter.REJECT)
        if plan.registers and not self._register(queue_id, plan):
            if self.settings.on_store_error == "tempfail":
                return self._reply(replies.STORE_UNAVAILABLE, Milter.TEMPFAIL)
            plan.body = None
            plan.notes.append("link store down: delivered untracked")
        try:
            self._apply(plan)
        except Exception:
            log.exception("%s tempfail: the MTA refused a change", queue_id)
            return Milter.TEMPFAIL
        log.info("%s accept: %s", queue_id, "; ".join(plan.notes) or "unchanged")
        return Milter.ACCEPT

    def abort(self) -> Any:
        self._reset()
        return Milter.CONTINUE

    def _plan(self, queue_id: str) -> Plan:
        envelope = Envelope(self.mail_from, tuple(self.rcpts), queue_id, int(time.time()))
        if self.body_size > MAX_BODY_BYTES:
            return Plan(delete_headers=msys_deletions(self.headers),
                        notes=[f"body over {MAX_BODY_BYTES} bytes left alone"])
        try:
            return (self.planner or plan_message)(self.headers, b"".join(self.chunks), envelope,
                                                  self.settings, new_message_key())
        except Exception:
            log.exception("%s internal error: delivering the message unchanged", queue_id)
            return Plan(delete_headers=msys_deletions(self.headers), notes=["internal error"])

    def _register(self, queue_id: str, plan: Plan) -> bool:
        assert plan.template is not None and plan.record is not None
        try:
            self.store.register(plan.message_key, plan.template, plan.record)
            return True
        except StoreError as exc:
            log.error("%s link store unavailable: %s", queue_id, exc)
            return False

    def _apply(self, plan: Plan) -> None:
        for name, index in plan.delete_headers:
            self.chgheader(name, index, "")
        if plan.body is not None:
            for start in range(0, len(plan.body), CHUNK):
                self.replacebody(plan.body[start:start + CHUNK])

    def _reply(self, reply: replies.Reply, verdict: Any) -> Any:
        self.setreply(reply.code, reply.xcode, reply.milter_text())
        return verdict


def run(settings: Settings, store: LinkStore, name: str = "engage-milter",
        timeout: Optional[int] = None) -> None:
    """Serve until libmilter stops (SIGTERM/SIGINT/SIGHUP)."""
    # libmilter takes these signals in a sigwait() thread and stops cleanly, provided no
    # other thread can receive them: block them before the pool starts its threads. But
    # first start multiprocessing's resource tracker, whose start unblocks SIGINT and
    # SIGTERM again in its caller.
    resource_tracker.ensure_running()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
    planner = Planner(settings.milter_workers, timeout=settings.plan_timeout, cache_size=settings.rewrite_cache)
    Milter.factory = lambda: TrackingMilter(settings, store, planner)
    Milter.set_flags(Milter.CHGBODY | Milter.CHGHDRS)
    Milter.set_exception_policy(Milter.TEMPFAIL)
    try:
        Milter.runmilter(name, settings.milter_socket, timeout=timeout or settings.milter_timeout)
    finally:
        planner.close()
