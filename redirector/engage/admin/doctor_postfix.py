"""``engage doctor``'s Postfix checks, on the values as Postfix reads them (postconf -hx).

Every milter of ``smtpd_milters`` and ``non_smtpd_milters`` must answer a milter
negotiation where the Postfix daemon looks for it (a chrooted one under the queue
directory); one that does not makes Postfix apply its default action to all mail, and the
finding says what that does (451 4.7.1 for tempfail, 550 5.5.0 for reject, 451 4.3.5 for a
configuration error). Also: an inline ``#`` comment (Postfix has none: it becomes milter
names), an unknown ``milter_default_action``, engage missing or behind a DKIM signer, and a
unix socket a chrooted smtpd cannot reach, with steps that work when followed as written.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from engage import settings as config
from engage.admin import postfixconf
from engage.admin.doctor_findings import ERROR, OK, SKIP, WARN, Finding, Options
from engage.admin.milterprobe import Address, ProbeError, connect_host, parse_socket, probe, user_may

POSTCONF_FALLBACK = "/usr/sbin/postconf"
ACTIONS = ("accept", "reject", "tempfail", "quarantine")
LISTS = ("smtpd_milters", "non_smtpd_milters")
TCP_SOCKET, TCP_ENTRY = "inet:8890@127.0.0.1", "inet:127.0.0.1:8890"


def postfix_syntax(address: Address, milters: postfixconf.PostfixMilters | None = None) -> str:
    """How smtpd_milters names our socket."""
    if address.family == "unix":
        spool = milters.queue_directory if milters else ""
        if milters and milters.chrooted_smtpd and spool and address.path.startswith(spool + "/"):
            return "unix:" + address.path[len(spool):]
        return f"unix:{address.path}"
    host = connect_host(address)
    return f"inet:[{host}]:{address.port}" if ":" in host else f"inet:{host}:{address.port}"


@dataclass(frozen=True)
class Context:
    settings: config.Settings
    options: Options
    milters: postfixconf.PostfixMilters
    ours: Address

    @property
    def main_cf(self) -> str:
        return os.path.join(self.options.postfix_config or "/etc/postfix", "main.cf")

    def postconf(self, name: str, value: str) -> str:
        where = f" -c {self.options.postfix_config}" if self.options.postfix_config else ""
        return f"postconf{where} -e '{name} = {value}'"

    @property
    def reload(self) -> str:
        where = f" -c {self.options.postfix_config}" if self.options.postfix_config else ""
        return f"postfix{where} reload"

    def action(self, entry: str) -> str:
        return self.milters.actions.get(entry, self.milters.default_action)

    def chroot(self, name: str) -> bool:
        """Is the daemon that applies list NAME chrooted (smtpd, or cleanup for non_smtpd)?"""
        return self.milters.chrooted_smtpd if name == "smtpd_milters" else self.milters.chrooted_cleanup

    def is_ours(self, name: str, entry: str) -> bool:
        return postfixconf.refers_to(entry, self.ours, self.milters, self.chroot(name))

    def entries(self, name: str) -> tuple[str, ...]:
        """The list up to an inline comment (what follows '#' is reported on its own)."""
        entries = self.milters.smtpd if name == "smtpd_milters" else self.milters.non_smtpd
        cut = next((i for i, e in enumerate(entries) if e.startswith("#")), len(entries))
        return entries[:cut]


def check_postfix(settings: config.Settings, options: Options) -> list[Finding]:
    postconf = shutil.which(options.postconf) or (
        POSTCONF_FALLBACK if os.path.exists(POSTCONF_FALLBACK) else None)
    if postconf is None:
        return [Finding(SKIP, "postfix", "Postfix is not installed here (no postconf): "
                        "not checked")]
    try:
        milters = postfixconf.read(postconf, options.postfix_config)
    except postfixconf.PostconfError as exc:
        return [Finding(ERROR, "postfix", f"cannot read Postfix's settings: {exc}")]
    ctx = Context(settings, options, milters, parse_socket(settings.milter_socket))
    findings = _comments(ctx) + _default_actions(ctx) + _smtpd(ctx)
    if milters.non_smtpd != milters.smtpd or milters.chrooted_cleanup != milters.chrooted_smtpd:
        findings += _non_smtpd(ctx)
    return findings


def effect(action: str, name: str, config_error: bool = False) -> tuple[bool, str]:
    """(does it stop mail, what Postfix does) when a milter of list NAME fails."""
    who = ("every message it receives by SMTP" if name == "smtpd_milters" else
           "every message submitted on this host with sendmail(1)")
    if action == "accept":
        return False, f"Postfix passes {who} on without that milter's work"
    if action == "quarantine":
        return True, f"Postfix puts {who} on hold (postqueue -p; postsuper -H ALL releases it)"
    if config_error or action not in ACTIONS:
        return True, f"all mail is refused: {who} gets 451 4.3.5 Server configuration problem"
    if name == "non_smtpd_milters":
        return True, f"all mail is refused: {who} stays in the maildrop queue"
    if action == "reject":
        return True, (f"all mail is refused: {who} gets 550 5.5.0 Service unavailable and "
                      "is bounced to its sender")
    return True, f"all mail is refused: {who} gets 451 4.7.1 Service unavailable"


def _comments(ctx: Context) -> list[Finding]:
    findings = []
    for name, raw in sorted(ctx.milters.explicit.items()):
        if "milter" not in name or "#" not in raw:
            continue
        value, _, comment = raw.partition("#")
        why = (f"so it takes '#{comment}' for more milters, which it cannot reach: "
               + effect(ctx.milters.default_action, name, config_error=True)[1]
               if name in LISTS else f"so the value is {raw!r}, which it does not know")
        findings.append(Finding(ERROR, "postfix", f"{name} in {ctx.main_cf} has an inline "
                                f"comment ({name} = {raw}): Postfix has no inline comments, {why}",
                                (ctx.postconf(name, value.strip()), ctx.reload,
                                 f"(comments go on lines of their own in {ctx.main_cf})")))
    return findings


def _default_actions(ctx: Context) -> list[Finding]:
    findings = []
    given = {"milter_default_action": ctx.milters.default_action}
    given.update({f"default_action of {e}": a for e, a in ctx.milters.actions.items()})
    for name, action in given.items():
        if "#" in action or action in ACTIONS:
            continue
        findings.append(Finding(ERROR, "postfix", f"{name} = {action} in {ctx.main_cf} is not an "
                                f"action Postfix knows ({', '.join(ACTIONS)}): whenever a milter "
                                "fails, all mail is refused with 451 4.3.5 Server configuration "
                                "problem ('unrecognized default action' in the log)",
                                (ctx.postconf("milter_default_action", "tempfail"), ctx.reload)
                                if name == "milter_default_action" else
                                (f"in {ctx.main_cf}: default_action=tempfail in that milter's "
                                 "{ } group", ctx.reload)))
    action = ctx.milters.default_action
    if action == "accept":
        findings.append(Finding(WARN, "postfix", f"milter_default_action = accept in "
                                f"{ctx.main_cf}: while engage is down mail goes out untracked "
                                "(tempfail keeps it queued)"))
    elif action == "reject":
        findings.append(Finding(WARN, "postfix", f"milter_default_action = reject in "
                                f"{ctx.main_cf}: while a milter is down every message is bounced "
                                "(550 5.5.0); tempfail keeps it queued instead",
                                (ctx.postconf("milter_default_action", "tempfail"), ctx.reload)))
    return findings


def _dead(ctx: Context, name: str) -> dict[str, str]:
    """Entries of list NAME other than engage that do not answer -> why not."""
    chroot = ctx.chroot(name)
    dead = {}
    for entry in ctx.entries(name):
        if ctx.is_ours(name, entry):
            continue  # the milter check probes engage's own socket
        address = postfixconf.parse_entry(entry)
        if address is None:
            dead[entry] = "Postfix cannot read it as a milter address (unix:/path or inet:host:port)"
            continue
        if address.family == "unix":
            address = Address("unix", path=postfixconf.seen_path(address.path, ctx.milters, chroot))
        try:
            probe(address, ctx.options.timeout)
        except ProbeError as exc:
            moved = address.family == "unix" and address.path != entry.partition(":")[2]
            dead[entry] = f"at {address.path}: {exc}" if moved else str(exc)
            continue
        if address.family == "unix":
            problem = user_may(ctx.options.mta_user, address.path, os.R_OK | os.W_OK)
            if problem and not problem.startswith("there is no user"):
                dead[entry] = f"{problem}, so Postfix gets 'Permission denied'"
    return dead


def _without(entries: tuple[str, ...], dead: dict[str, str], first: str | None) -> str:
    kept = [e for e in entries if e not in dead and e != first]
    return ", ".join(([first] if first else []) + kept)


def _smtpd(ctx: Context) -> list[Finding]:
    name, entries = "smtpd_milters", ctx.entries("smtpd_milters")
    expected = postfix_syntax(ctx.ours, ctx.milters)
    mine = [e for e in entries if ctx.is_ours(name, e)]
    dead = _dead(ctx, name)
    if not mine:
        return _missing(ctx, entries, dead, expected)
    findings = [Finding(OK, "postfix", f"smtpd_milters in {ctx.main_cf} sends mail to engage "
                        f"({mine[0]})")]
    signers = [e for e in entries[:entries.index(mine[0])] if postfixconf.looks_like_dkim_signer(e)]
    if signers:
        findings.append(Finding(ERROR, "postfix", f"smtpd_milters calls {signers[0]} (a DKIM "
                                "signer) before engage: the signature is made before engage "
                                "rewrites the links, so receivers find it broken",
                                (ctx.postconf(name, _without(entries, {}, mine[0])), ctx.reload)))
    return findings + _dead_findings(ctx, name, entries, dead, mine[0])


def _dead_findings(ctx: Context, name: str, entries: tuple[str, ...], dead: dict[str, str],
                   mine: str | None) -> list[Finding]:
    findings = []
    for entry, why in dead.items():
        stops, what = effect(ctx.action(entry), name)
        findings.append(Finding(ERROR if stops else WARN, "postfix", f"{name} lists {entry}, "
                                f"which does not answer ({why}): {what}",
                                (f"start that milter ({_service_hint(entry)}), or take it out:",
                                 ctx.postconf(name, _without(entries, {entry: why}, mine)),
                                 ctx.reload)))
    return findings


def _service_hint(entry: str) -> str:
    if "opendkim" in entry.lower() or entry.endswith(":8891"):
        return "systemctl start opendkim"
    return "its service"


def _missing(ctx: Context, entries: tuple[str, ...], dead: dict[str, str],
             expected: str) -> list[Finding]:
    outside = [e for e in entries if ctx.ours.family == "unix" and ctx.milters.chrooted_smtpd
               and postfixconf.parse_entry(e) == ctx.ours]
    if outside:
        others = {e: why for e, why in dead.items() if e != outside[0]}
        return [_outside_chroot(ctx, entries, outside[0]),
                *_dead_findings(ctx, "smtpd_milters", entries, others, outside[0])]
    return [_not_engage(ctx, entries, dead, expected)]


def _not_engage(ctx: Context, entries: tuple[str, ...], dead: dict[str, str],
                expected: str) -> Finding:
    current = ", ".join(entries) or "empty"
    fix = (ctx.postconf("smtpd_milters", _without(entries, dead, expected)),
           *([] if ctx.milters.non_smtpd else [ctx.postconf("non_smtpd_milters", "$smtpd_milters")]),
           ctx.reload)
    stops = {e: why for e, why in dead.items() if effect(ctx.action(e), "smtpd_milters")[0]}
    if stops:
        entry, why = next(iter(stops.items()))
        return Finding(ERROR, "postfix", f"{effect(ctx.action(entry), 'smtpd_milters')[1]}: "
                       f"smtpd_milters in {ctx.main_cf} is {current}, and {entry} does not "
                       f"answer ({why}). Nor does the list name engage, which listens on "
                       f"{ctx.settings.milter_socket} ([milter] socket), {expected} for Postfix",
                       fix)
    return Finding(ERROR, "postfix", f"Postfix does not send mail to engage: smtpd_milters in "
                   f"{ctx.main_cf} is {current}, so mail goes out untracked. Add {expected} "
                   "(before any DKIM signer)", fix)


def _outside_chroot(ctx: Context, entries: tuple[str, ...], entry: str) -> Finding:
    spool, conf = ctx.milters.queue_directory, ctx.settings.source
    user = ctx.options.service_user
    seen = postfixconf.seen_path(ctx.ours.path, ctx.milters, True)
    stops, what = effect(ctx.action(entry), "smtpd_milters")
    tcp = _without(entries, {}, None).replace(entry, TCP_ENTRY)
    inside = _without(entries, {}, None).replace(entry, "unix:/engage/milter.sock")
    return Finding(ERROR if stops else WARN, "postfix", f"Postfix's smtpd runs chrooted in "
                   f"{spool}, so for {entry} it opens {seen}, where nothing listens: {what}. "
                   f"engage-milter listens on {ctx.ours.path}, outside the chroot",
                   ("either, with a TCP socket (simplest):",
                    f"in {conf}: [milter] socket = {TCP_SOCKET}",
                    "systemctl restart engage-milter",
                    ctx.postconf("smtpd_milters", tcp), ctx.reload,
                    "or, with a unix socket inside the chroot:",
                    f"install -d -o {user} -g {user} -m 0750 {spool}/engage",
                    f"in {conf}: [milter] socket = unix:{spool}/engage/milter.sock",
                    "systemctl restart engage-milter",
                    f"adduser {ctx.options.mta_user} {user}",
                    ctx.postconf("smtpd_milters", inside), ctx.reload))


def _non_smtpd(ctx: Context) -> list[Finding]:
    name, entries = "non_smtpd_milters", ctx.entries("non_smtpd_milters")
    mine = [e for e in entries if ctx.is_ours(name, e)]
    findings = _dead_findings(ctx, name, entries, _dead(ctx, name), mine[0] if mine else None)
    if not mine:
        findings.append(Finding(WARN, "postfix", f"non_smtpd_milters in {ctx.main_cf} does not "
                                "include engage: mail submitted with sendmail(1) on this host is "
                                "not tracked",
                                (ctx.postconf(name, "$smtpd_milters"), ctx.reload)))
    return findings
