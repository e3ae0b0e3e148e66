"""engage doctor on a live installation, the mail side: each breakage of the issue-17 list
that stops mail is set up on a real sandbox Postfix, the doctor names cause, effect and
fix and exits 1, its --probe (a real message through that Postfix) sees what a sender
would, and following the fix as written brings the installation back to no errors.

Breakages here: 1 wrong socket, 6 DKIM signer first, 7 a milter that does not answer,
8 inline comments, 9 invalid milter_default_action, 14 milter stopped, 20 fresh install.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engage.admin import doctor
from support.doctorstack import (
    PROBE_TO,
    Stack,
    case_dir,
    diagnose,
    flat,
    follow,
    make_stack,
)
from support.procs import REPO, free_port

MILTER_REFUSED = "451 4.7.1 Service unavailable"
CONFIG_REFUSED = "451 4.3.5 Server configuration problem"


@pytest.fixture
def stack(engage_tmp, request, redis_server, start_milter, start_redirector,
          postfix_sandbox) -> Stack:
    return make_stack(case_dir(engage_tmp, "doctor-mail", request.node.name), redis_server.url,
                      start_milter, start_redirector, postfix_sandbox)


def services(stack: Stack) -> dict:
    return {"systemctl start engage-milter": stack.milter.start}


def assert_healthy(stack: Stack) -> None:
    """No error and no warning but the loopback tracking URL's; the probe went through."""
    found = diagnose(stack.options())
    assert found.problems() == [("warn", "tracking")], found.output
    assert found.only("ok", "probe").text.startswith(f"Postfix took the probe to {PROBE_TO}")
    assert found.code == 0


def test_a_healthy_installation_passes_and_its_probe_is_delivered_tracked(stack):
    assert_healthy(stack)
    (delivered,) = stack.postfix.wait_delivered(1)
    assert b"https://example.com/engage-doctor-probe" not in delivered  # the link was rewritten
    assert f"{stack.redirector.public_url}/c/".encode() in delivered


def test_1_smtpd_milters_at_the_wrong_socket_says_all_mail_is_refused(stack):
    stack.postconf(smtpd_milters=f"inet:127.0.0.1:{free_port()}")
    found = diagnose(stack.options())
    error = found.only("error", "postfix")
    assert flat(error.text).startswith("all mail is refused: every message it receives by SMTP "
                                       "gets 451 4.7.1 Service unavailable: smtpd_milters")
    assert "does not answer (Connection refused)" in error.text
    assert "Nor does the list name engage" in error.text
    assert "does not send mail to engage" not in found.output
    assert error.fix[0] == (f"postconf -c {stack.postfix_config} -e "
                            f"'smtpd_milters = {stack.milter.postfix_socket}'")
    assert MILTER_REFUSED in found.only("error", "probe").text  # what a sender gets
    assert found.code == 1
    follow(error.fix, services(stack))
    assert_healthy(stack)


def test_7_a_milter_in_the_list_that_does_not_answer_refuses_all_mail(stack):
    opendkim = "unix:/run/opendkim/opendkim.sock"  # the README's example, without OpenDKIM
    stack.postconf(smtpd_milters=f"{stack.milter.postfix_socket}, {opendkim}")
    found = diagnose(stack.options())
    error = found.only("error", "postfix")
    assert flat(error.text) == (
        f"smtpd_milters lists {opendkim}, which does not answer (the socket file does not "
        "exist): all mail is refused: every message it receives by SMTP gets 451 4.7.1 "
        "Service unavailable")
    assert error.fix[0] == "start that milter (systemctl start opendkim), or take it out:"
    assert MILTER_REFUSED in found.only("error", "probe").text
    assert found.code == 1
    follow(error.fix[1:], services(stack))
    assert_healthy(stack)


@pytest.mark.parametrize("alone", [True, False], ids=["engage-alone", "with-another-milter"])
def test_8_an_inline_comment_in_smtpd_milters_refuses_all_mail(stack, start_milter, alone):
    others = "" if alone else f", {start_milter().postfix_socket}"
    value = f"{stack.milter.postfix_socket}{others}"
    stack.postconf(smtpd_milters=f"{value}   # engage first, then the rest")
    found = diagnose(stack.options())
    error = found.only("error", "postfix")
    assert flat(error.text).startswith(
        f"smtpd_milters in {stack.postfix_config}/main.cf has an inline comment (smtpd_milters "
        f"= {value} # engage first, then the rest): Postfix has no inline comments, so it "
        "takes '# engage first, then the rest' for more milters, which it cannot reach: all "
        "mail is refused")
    assert CONFIG_REFUSED[4:] in error.text
    assert error.fix[0] == f"postconf -c {stack.postfix_config} -e 'smtpd_milters = {value}'"
    assert CONFIG_REFUSED in found.only("error", "probe").text
    assert found.code == 1
    follow(error.fix, services(stack))
    assert_healthy(stack)


def test_9_an_invalid_milter_default_action_is_an_error(stack):
    stack.postconf(milter_default_action="tempfial")
    found = diagnose(stack.options())
    error = found.only("error", "postfix")
    assert error.text.startswith("milter_default_action = tempfial in ")
    assert ("is not an action Postfix knows (accept, reject, tempfail, quarantine): whenever a "
            "milter fails, all mail is refused with 451 4.3.5") in flat(error.text)
    assert error.fix[0] == (f"postconf -c {stack.postfix_config} -e "
                            "'milter_default_action = tempfail'")
    assert found.code == 1
    stack.milter.kill()  # what the doctor warns of: a milter fails, Postfix answers 4.3.5
    assert CONFIG_REFUSED in diagnose(stack.options()).only("error", "probe").text
    stack.milter.start()
    follow(error.fix, services(stack))
    assert_healthy(stack)


def test_6_a_dkim_signer_before_engage_is_an_error(stack, start_milter, engage_tmp):
    signer_socket = Path(engage_tmp) / f"dkim-{free_port()}" / "opendkim.sock"
    signer_socket.parent.mkdir()
    start_milter({"ENGAGE_MILTER_SOCKET": f"unix:{signer_socket}"})  # stands in for OpenDKIM
    signer_socket.chmod(0o777)
    signer = f"unix:{signer_socket}"
    stack.postconf(smtpd_milters=f"{signer}, {stack.milter.postfix_socket}")
    found = diagnose(stack.options())
    error = found.only("error", "postfix")
    assert error.text.startswith(f"smtpd_milters calls {signer} (a DKIM signer) before engage: "
                                 "the signature is made before engage rewrites the links")
    assert error.fix[0] == (f"postconf -c {stack.postfix_config} -e "
                            f"'smtpd_milters = {stack.milter.postfix_socket}, {signer}'")
    assert found.code == 1
    follow(error.fix, services(stack))
    assert_healthy(stack)


def test_14_the_milter_stopped_is_an_error_and_mail_is_refused(stack):
    stack.milter.kill()
    found = diagnose(stack.options())
    error = found.only("error", "milter")
    assert f"the milter does not answer on {stack.milter.socket}: Connection refused" in error.text
    assert "engage-milter is stopped" in error.text and "451 4.7.1" in error.text
    assert error.fix[0] == "systemctl start engage-milter"
    assert MILTER_REFUSED in found.only("error", "probe").text
    assert found.code == 1
    follow(error.fix, services(stack))
    assert_healthy(stack)


def test_20_a_fresh_install_with_nothing_configured(engage_tmp, tmp_path):
    """The shipped engage.conf untouched and Postfix's main.cf without a milter."""
    conf = Path(engage_tmp) / f"fresh-{free_port()}.conf"
    shutil.copy(REPO / "etc" / "engage" / "engage.conf", conf)
    postfix = tmp_path / "postfix"
    postfix.mkdir()
    (postfix / "main.cf").write_text("compatibility_level = 3.6\n")
    (postfix / "master.cf").write_text("smtp inet n - y - - smtpd\n")
    done = subprocess.run(
        [sys.executable, "-m", "engage.admin.cli", "doctor", "--config", str(conf),
         "--postfix-config", str(postfix), "--nginx-dir", str(tmp_path / "none"),
         "--skip", "redis,milter", "--timeout", "2"],
        capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/sbin:/usr/bin:/bin", "PYTHONPATH": str(REPO / "redirector")})
    output = flat(done.stdout)
    assert done.returncode == 1, done.stdout + done.stderr
    assert ("ERROR config engage is not configured yet: [tracking] url is not set in "
            f"{conf}, so the milter would rewrite links to http://127.0.0.1:8080") in output
    assert f"Fix: in {conf}: [tracking] url = https://click.example.com" in output
    assert ("ERROR postfix Postfix does not send mail to engage: smtpd_milters in "
            f"{postfix}/main.cf is empty") in output
    assert (f"Fix: postconf -c {postfix} -e 'smtpd_milters = inet:127.0.0.1:8890' postconf -c "
            f"{postfix} -e 'non_smtpd_milters = $smtpd_milters' postfix -c {postfix} reload"
            ) in output
    assert "2 errors" in output


def test_cli_exit_status_is_1_on_an_error_and_the_fix_is_printed(stack):
    stack.postconf(smtpd_milters=f"{stack.milter.postfix_socket}, unix:/run/nothing.sock")
    options = stack.options()
    done = subprocess.run(
        [sys.executable, "-m", "engage.admin.cli", "doctor", "--config", options.config,
         "--postfix-config", options.postfix_config, "--nginx-dir", options.nginx_dir,
         "--probe", PROBE_TO, "--probe-from", options.probe_from, "--smtp", options.smtp],
        capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/sbin:/usr/bin:/bin", "PYTHONPATH": str(REPO / "redirector")})
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    error = next(i for i, line in enumerate(lines) if line.startswith("ERROR  postfix"))
    assert "smtpd_milters lists unix:/run/nothing.sock, which does not answer" in flat(
        " ".join(lines[error:error + 3]))
    assert any(line.strip().startswith("Fix: start that milter") for line in lines[error:])
    assert doctor.exit_status(diagnose(options).findings) == 1
