"""Settings: the shipped file parses to the defaults, env wins, errors name file/section/key."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from engage import settings

REPO = Path(__file__).resolve().parents[2]
ETC = REPO / "etc" / "engage" / "engage.conf"


def this_tree() -> dict[str, str]:
    """The environment for a subprocess that runs this tree's packages (not the venv's)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "redirector"),
                                                        str(REPO / "milter")])}


def test_shipped_config_lists_every_key_at_its_default(tmp_path):
    text = ETC.read_text()
    assert settings.load(str(ETC), environ={}) == settings.Settings(source=str(ETC))
    path = tmp_path / "uncommented.conf"
    path.write_text(re.sub(r"(?m)^#(\w+ =)", r"\1", text.replace("#example.com =", "#")))
    loaded = settings.load(str(path), environ={})
    assert {k: v for k, v in vars(loaded).items() if k not in ("source", "tracking_domains")} == \
        {k: v for k, v in vars(settings.Settings()).items() if k not in ("source", "tracking_domains")}
    for section, key, *_ in settings.SCHEMA:
        assert f"#{key} =" in text, f"[{section}] {key} missing from etc/engage/engage.conf"


def test_environment_overrides_the_file(tmp_path):
    conf = tmp_path / "e.conf"
    conf.write_text("[tracking]\nurl = https://file.example\n[redis]\nkey_prefix = f:\n")
    loaded = settings.load(str(conf), environ={"ENGAGE_TRACKING_URL": "https://env.example/t/"})
    assert loaded.tracking_url == "https://env.example/t" and loaded.key_prefix == "f:"


def test_engage_config_names_the_file(tmp_path):
    conf = tmp_path / "e.conf"
    conf.write_text("[milter]\nsocket = inet:9999@127.0.0.1\n")
    assert settings.load(environ={"ENGAGE_CONFIG": str(conf)}).milter_socket == "inet:9999@127.0.0.1"


@pytest.mark.parametrize("text, message", [
    ("[milter]\non_store_error = maybe\n", "e.conf: [milter] on_store_error: must be one of tempfail, accept"),
    ("[milter]\nsocket = 8890\n", "e.conf: [milter] socket: must look like"),
    ("[tracking]\nurl = ftp://x\n", "e.conf: [tracking] url: must be an http(s) URL"),
    ("[tracking]\nurl = https://x.example/a\"b\n", "e.conf: [tracking] url: may hold only URL characters"),
    ("[tracking]\nopen_tracking = perhaps\n", "e.conf: [tracking] open_tracking: expected yes/no"),
    ("[milter]\nmax_metadata_bytes = -1\n", "e.conf: [milter] max_metadata_bytes: must be between"),
    ("[milter]\nsokcet = x\n", "e.conf: [milter] sokcet: unknown key"),
    ("[tracking]\nlink_style = long\n", "e.conf: [tracking] link_style: must be one of short, v1"),
    ("[web]\nurl_signing_key = short\n", "e.conf: [web] url_signing_key: must be at least 16"),
    ("[miltr]\n", "e.conf: [miltr]: unknown section"),
    ("not ini", "e.conf: File contains no section headers"),
])
def test_bad_values_name_file_section_and_key(tmp_path, text, message):
    conf = tmp_path / "e.conf"
    conf.write_text(text)
    with pytest.raises(settings.SettingsError) as info:
        settings.load(str(conf), environ={})
    assert message in str(info.value)


def test_v1_settings_from_the_environment_and_the_signing_key_is_masked():
    loaded = settings.load(environ={"ENGAGE_CONFIG": "/dev/null", "ENGAGE_LINK_STYLE": "V1",
                                    "ENGAGE_URL_SIGNING_KEY": "k" * 20})
    assert loaded.link_style == "v1" and loaded.url_signing_key == "k" * 20
    assert "k" * 20 not in settings.describe(loaded)
    assert settings.load(environ={"ENGAGE_CONFIG": "/dev/null"}).link_style == "short"


def test_missing_explicit_file_is_an_error():
    with pytest.raises(settings.SettingsError, match="file not found"):
        settings.load("/nonexistent/engage.conf", environ={})


def test_tracking_domain_by_from_domain_and_subdomain(tmp_path):
    conf = tmp_path / "e.conf"
    conf.write_text("[tracking_domains]\nexample.com = https://click.example.com\n")
    loaded = settings.load(str(conf), environ={})
    assert loaded.tracking_url_for("news.example.com") == "https://click.example.com"
    assert loaded.tracking_url_for("other.org") == loaded.tracking_url


@pytest.mark.parametrize("argv", [
    ["-m", "engage_milter.main", "--config"],
    ["-m", "engage.webhooks", "--config"],
])
def test_entry_points_refuse_bad_settings_with_exit_78(tmp_path, argv):
    conf = tmp_path / "e.conf"
    conf.write_text("[milter]\non_store_error = maybe\n")
    result = subprocess.run([sys.executable, *argv, str(conf), *(["check-config"] if "webhooks" in argv[1] else [])],
                            capture_output=True, text=True, timeout=60, env=this_tree())
    assert result.returncode == 78, result.stderr
    assert f"{conf}: [milter] on_store_error: must be one of tempfail, accept" in result.stderr
    assert "Traceback" not in result.stderr


def test_milter_check_config_prints_the_effective_settings_with_keys_masked(tmp_path):
    conf = tmp_path / "e.conf"
    conf.write_text("[api]\nkeys = secret-one-abcdefghijklm, secret-two-abcdefghijklm\n")
    result = subprocess.run([sys.executable, "-m", "engage_milter.main", "--config", str(conf), "--check-config"],
                            capture_output=True, text=True, timeout=60, env=this_tree())
    assert result.returncode == 0
    assert "api.keys = (2 keys)" in result.stdout and "secret" not in result.stdout


@pytest.mark.parametrize("text, message", [
    ("[verdicts]\nrules = machines.conf\n", "[verdicts] rules: must be an absolute path"),
    ("[verdicts]\nextra_rules = /etc/a.conf, b.conf\n", "[verdicts] extra_rules: 'b.conf' must be an absolute path"),
    ("[verdicts]\nfast_click_seconds = -1\n", "[verdicts] fast_click_seconds: must be between 0 and 3600"),
    ("[verdicts]\nburst_links = many\n", "[verdicts] burst_links: invalid literal"),
    ("[verdicts]\ntrap_link = sometimes\n", "[verdicts] trap_link: expected yes/no"),
    ("[verdicts]\ntrap_window = 0\n", "[verdicts] trap_window: must be between 1 and 86400"),
])
def test_bad_verdicts_settings_name_the_key(tmp_path, text, message):
    conf = tmp_path / "e.conf"
    conf.write_text(text)
    with pytest.raises(settings.SettingsError, match=re.escape(message)):
        settings.load(str(conf), environ={})


def test_verdicts_settings_from_the_environment():
    loaded = settings.load(environ={"ENGAGE_CONFIG": "/dev/null", "ENGAGE_TRAP_LINK": "yes",
                                    "ENGAGE_VERDICT_EXTRA_RULES": "/etc/engage/a.conf,/etc/engage/b.conf"})
    assert loaded.trap_link is True
    assert loaded.verdict_extra_rules == ("/etc/engage/a.conf", "/etc/engage/b.conf")
    assert "verdicts.extra_rules = /etc/engage/a.conf, /etc/engage/b.conf" in settings.describe(loaded)


def test_the_redirector_refuses_a_bad_rules_file_with_exit_78(tmp_path):
    """gunicorn imports the app factory; a bad rules file names file and line, exit 78."""
    bad = tmp_path / "local.conf"
    bad.write_text("# mine\n[Our gateway]\nverdict = scanner\nua = Gateway[\n")
    conf = tmp_path / "e.conf"
    conf.write_text(f"[verdicts]\nextra_rules = {bad}\n")
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", "from engage.web.app import create_app; create_app()"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "ENGAGE_CONFIG": str(conf), "PYTHONPATH": f"{repo / 'redirector'}"})
    assert result.returncode == 78, result.stderr
    assert f"engage redirector: {bad}:4: ua 'Gateway[' is not a regular expression" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_key_is_declared_once_with_a_doc_and_its_variable_named_in_the_shipped_file():
    """The declaration (engage.settings.declared) is the one place; the shipped file
    documents the same keys and names each environment variable."""
    import dataclasses
    text = ETC.read_text()
    declared = [f.metadata["setting"] for f in dataclasses.fields(settings.Settings)
                if "setting" in f.metadata]
    assert len({(k.section, k.key) for k in declared}) == len(declared) == len(settings.SCHEMA)
    for key in declared:
        assert key.doc and not key.doc.endswith("."), (key.section, key.key)
        if key.env:
            assert f"[{key.env}]" in text, f"{key.env} not named in etc/engage/engage.conf"


@pytest.mark.parametrize("keys", [
    "0123456789abcdef0123456789abcdef",  # 32 hex digits: 128 bits
    "abcdefghijklmnopqrstuv",  # 22 base64url characters: 132 bits
    "012345678901234567890123456789012345678",  # 39 decimal digits
    "!#$%&()*+./:;<=>?@[]^",  # 20 printable ASCII
    "0123456789abcdef0123456789abcdef, abcdefghijklmnopqrstuv",
])
def test_api_keys_of_128_bits_are_accepted(keys):
    loaded = settings.load(environ={"ENGAGE_CONFIG": "/dev/null", "ENGAGE_API_KEYS": keys})
    assert loaded.api_keys == tuple(key.strip() for key in keys.split(","))


@pytest.mark.parametrize("keys, message", [
    ("0123456789abcdef0123456789abcde", "key 1 of 1 is too short: 124 bits, at least 128"),
    ("abcdefghijklmnopqrstu", "key 1 of 1 is too short: 126 bits"),
    ("01234567890123456789012345678901234567", "key 1 of 1 is too short"),
    ("abcdefghijklmnopqrstuv, test-key-1", "key 2 of 2 is too short"),
    ("abcdefghijklmnopqrstuv\u00e9", "key 1 of 1: only printable ASCII without spaces"),
])
def test_api_keys_under_128_bits_are_refused_without_showing_them(tmp_path, keys, message):
    conf = tmp_path / "e.conf"
    conf.write_text(f"[api]\nkeys = {keys}\n", encoding="utf-8")
    with pytest.raises(settings.SettingsError) as info:
        settings.load(str(conf), environ={})
    assert f"e.conf: [api] keys: {message}" in str(info.value)
    assert all(key.strip() not in str(info.value) for key in keys.split(","))


def test_the_redirector_refuses_a_short_api_key_with_exit_78(tmp_path):
    conf = tmp_path / "e.conf"
    conf.write_text("[api]\nkeys = hunter2\n")
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", "from engage.web.app import create_app; create_app()"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "ENGAGE_CONFIG": str(conf), "PYTHONPATH": f"{repo / 'redirector'}"})
    assert result.returncode == 78, result.stderr
    assert f"engage redirector: {conf}: [api] keys: key 1 of 1 is too short" in result.stderr
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("url, masked", [
    ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ("rediss://user:p@ss@redis.example:6380/1", "rediss://user:***@redis.example:6380/1"),
    ("redis+cluster://default:s3cr3t@[::1]:7000", "redis+cluster://default:***@[::1]:7000"),
    ("unix:///run/redis.sock?db=2&password=sec", "unix:///run/redis.sock?db=2&password=***"),
    ("redis://h?Password=x", "redis://h?Password=***"),
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("redis://user@host/0", "redis://user@host/0"),
])
def test_mask_url_hides_every_password(url, masked):
    assert settings.mask_url(url) == masked


@pytest.mark.parametrize("argv", [
    ["-m", "engage_milter.main", "--config", "{conf}", "--check-config"],
    ["-m", "engage.webhooks", "--config", "{conf}", "check-config"],
])
def test_check_config_masks_passwords_in_urls(tmp_path, argv):
    conf = tmp_path / "e.conf"
    conf.write_text("[redis]\nurl = rediss://engage:topsecret@redis.example:6380/0\n"
                    "[tracking]\nurl = https://u:alsosecret@click.example.com/t\n")
    result = subprocess.run([sys.executable, *(a.format(conf=conf) for a in argv)],
                            capture_output=True, text=True, timeout=60, env=this_tree())
    assert result.returncode == 0, result.stderr
    assert "redis.url = rediss://engage:***@redis.example:6380/0" in result.stdout
    assert "tracking.url = https://u:***@click.example.com/t" in result.stdout
    assert "secret" not in result.stdout + result.stderr


def test_webhook_private_targets_setting():
    assert settings.Settings().webhook_allow_private_targets is False
    loaded = settings.load(environ={"ENGAGE_CONFIG": "/dev/null",
                                    "ENGAGE_WEBHOOK_ALLOW_PRIVATE_TARGETS": "yes"})
    assert loaded.webhook_allow_private_targets is True
