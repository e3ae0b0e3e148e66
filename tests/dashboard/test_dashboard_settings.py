"""[dashboard] settings and `engage dashboard-user`: users parse from the file or the
environment, bad entries name the key, enabled without users stops start-up, hashes are
never shown; the command's entry is accepted by the settings and verifies the password."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engage import settings
from engage.dashboard.passwords import parse_hash, verify

REPO = Path(__file__).resolve().parents[2]
HASH = "pbkdf2:sha256:1000$abcdefgh12345678$" + "0" * 64


def load(tmp_path: Path, text: str, **env: str) -> settings.Settings:
    conf = tmp_path / "e.conf"
    conf.write_text(text)
    return settings.load(str(conf), environ=env)


def test_off_by_default_without_users():
    loaded = settings.load(environ={"ENGAGE_CONFIG": "/dev/null"})
    assert (loaded.dashboard_enabled, loaded.dashboard_users) == (False, ())


def test_users_separated_by_commas_or_lines_and_hashes_never_described(tmp_path):
    loaded = load(tmp_path, f"[dashboard]\nenabled = yes\nusers = ada:{HASH},\n"
                            f"  bob.b@example.com:{HASH.replace('abcd', 'wxyz')}\n")
    assert loaded.dashboard_enabled
    assert [name for name, _ in loaded.dashboard_users] == ["ada", "bob.b@example.com"]
    text = settings.describe(loaded)
    assert "dashboard.users = ada, bob.b@example.com" in text and "pbkdf2" not in text


def test_environment_turns_it_on(tmp_path):
    loaded = load(tmp_path, "", ENGAGE_DASHBOARD_ENABLED="on", ENGAGE_DASHBOARD_USERS=f"ada:{HASH}")
    assert loaded.dashboard_enabled and loaded.dashboard_users == (("ada", HASH),)


@pytest.mark.parametrize("text, message", [
    ("[dashboard]\nenabled = yes\n", "e.conf: [dashboard] users: enabled = yes needs at least one user"),
    ("[dashboard]\nusers = ada\n", "e.conf: [dashboard] users: 'ada'...: expected name:hash"),
    ("[dashboard]\nusers = ada:plaintext\n", "e.conf: [dashboard] users: user 'ada': not a password hash"),
    (f"[dashboard]\nusers = a d:{HASH}\n", "expected name:hash"),
    (f"[dashboard]\nusers = ada:{HASH}, ada:{HASH}\n", "user 'ada' is listed twice"),
    ("[dashboard]\nenabled = sometimes\n", "e.conf: [dashboard] enabled: expected yes/no"),
])
def test_bad_dashboard_settings_name_the_key(tmp_path, text, message):
    with pytest.raises(settings.SettingsError) as info:
        load(tmp_path, text)
    assert message in str(info.value)


def engage(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "redirector")}
    return subprocess.run([sys.executable, "-m", "engage.admin.cli", *args], input=stdin,
                          capture_output=True, text=True, env=env, timeout=60)


def test_dashboard_user_prints_an_entry_the_settings_take(tmp_path):
    done = engage("dashboard-user", "ada", "--password-stdin", "--method", "pbkdf2",
                  stdin="a long password\n")
    assert done.returncode == 0, done.stderr
    entry = done.stdout.strip()
    assert entry.startswith("ada:pbkdf2:sha256:") and "a long password" not in entry
    loaded = load(tmp_path, f"[dashboard]\nenabled = yes\nusers = {entry}\n")
    [(name, stored)] = loaded.dashboard_users
    assert name == "ada" and verify(parse_hash(stored), "a long password")
    assert not verify(parse_hash(stored), "a long passwordX")


@pytest.mark.parametrize("args, stdin, status, error", [
    (("dashboard-user", "ada", "--password-stdin"), "short\n", 1, "at least 8"),
    (("dashboard-user", "a:b", "--password-stdin"), "long enough pw\n", 2, "letters, digits"),
])
def test_dashboard_user_refuses_short_passwords_and_bad_names(args, stdin, status, error):
    done = engage(*args, stdin=stdin)
    assert done.returncode == status and error in done.stderr and not done.stdout
