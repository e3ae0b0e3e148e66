"""The verdict classifier and its rules file, as pure logic.

Recorded request patterns of each kind of scanner and proxy are data
(tests/data/verdict_requests.json: user agent, address, method, timing, written from
the vendors' documented user agents and behaviours); each must get its verdict and
reasons from the shipped etc/engage/machines.conf. Then the rules file format: every
mistake names file and line, later files extend earlier ones, the network lookup.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engage.settings import Settings
from engage.verdicts import machines
from engage.verdicts.machines import Rules, RulesError
from engage.verdicts.rules import Facts, Thresholds, Verdict, classify, engage_object, signals

DATA = Path(__file__).resolve().parents[1] / "data"
REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "etc" / "engage" / "machines.conf"
# Subprocesses run this tree's code, whatever the venv has installed.
ENV = {**os.environ, "PYTHONPATH": f"{REPO / 'redirector'}:{REPO / 'milter'}"}
REQUESTS = json.loads((DATA / "verdict_requests.json").read_text())
RULES = machines.load([str(SHIPPED)])
LIMITS = Thresholds()


def facts(case: dict) -> Facts:
    return Facts(case["kind"], case.get("method", "GET"), case["ip"], case["ua"], case["age"],
                 case.get("links_in_second", 0), case.get("trap", False),
                 case.get("after_trap", False))


@pytest.mark.parametrize("case", REQUESTS, ids=[case["name"] for case in REQUESTS])
def test_recorded_request_patterns(case):
    assert classify(facts(case), RULES, LIMITS) == Verdict(case["verdict"], tuple(case["reasons"]))


def test_every_shipped_machine_is_exercised_by_a_recorded_pattern():
    named = " ".join(reason for case in REQUESTS for reason in case["reasons"])
    for machine in RULES.machines:
        assert machine.name in named, machine.name


def test_the_default_thresholds_are_the_settings_defaults():
    settings = Settings()
    assert LIMITS == Thresholds(settings.fast_click_seconds, settings.fast_open_seconds,
                                settings.burst_links)


def test_thresholds_can_be_switched_off():
    quick = Facts("click", "GET", "192.0.2.1", "Firefox", age=0.5, links_in_second=9)
    off = Thresholds(fast_click_seconds=0, fast_open_seconds=0, burst_links=0)
    assert classify(quick, RULES, off) == Verdict("human")
    assert classify(quick, RULES, LIMITS).verdict == "scanner"
    opened = Facts("open", age=0.5)
    assert classify(opened, RULES, off).verdict == "human"


def test_a_clock_behind_the_milters_reads_as_at_once():
    assert classify(Facts("open", age=-3.0), RULES, LIMITS) == \
        Verdict("prefetch", ("opened 0 s after injection",))


def test_engage_object_records_only_signals_a_recompute_cannot_rebuild():
    plain = Facts("click", "GET", "192.0.2.1", "Firefox", 900.0)
    assert engage_object(classify(plain, RULES, LIMITS), plain) == {"verdict": "human", "reasons": []}
    head = Facts("click", "head", "192.0.2.1", "Firefox", 900.0, links_in_second=4, trap=True,
                 after_trap=True)
    assert signals(head) == {"method": "HEAD", "links_in_second": 4, "trap": True, "after_trap": True}
    assert engage_object(classify(head, RULES, LIMITS), head)["signals"] == signals(head)


def test_trap_signals_are_for_clicks_only():
    assert classify(Facts("open", after_trap=True), RULES, LIMITS).verdict == "human"
    assert classify(Facts("open", links_in_second=5), RULES, LIMITS).verdict == "human"


# ------------------------------------------------------------------ the rules file
def rules_from(tmp_path: Path, *texts: str) -> Rules:
    paths = []
    for number, text in enumerate(texts):
        path = tmp_path / f"rules{number}.conf"
        path.write_text(text)
        paths.append(str(path))
    return machines.load(paths)


@pytest.mark.parametrize("text, line, message", [
    ("verdict = scanner\n", 1, "verdict outside a [section]"),
    ("[A]\nverdict = robot\n", 2, "verdict must be one of human, scanner, privacy_proxy, prefetch"),
    ("[A]\nverdict = scanner\nevents = opens\n", 3, "events must list open and/or click"),
    ("[A]\nverdict = scanner\nnet = 192.0.2.0/33\n", 3, "net '192.0.2.0/33'"),
    ("[A]\nverdict = scanner\n\n# x\nnet = 192.0.2.1/24\n", 5, "has host bits set"),
    ("[A]\nverdict = scanner\nua = Bot(\n", 3, "is not a regular expression"),
    ("[A]\nverdict = scanner\nua = .*\n", 3, "matches every user agent"),
    ("[A]\nverdict = scanner\nua = (?P<x>Bot)\n", 3, "named groups"),
    ("[A]\nverdict = scanner\nip = 192.0.2.0/24\n", 3, "unknown key 'ip'"),
    ("[A]\nverdict = scanner\nverdict = human\n", 3, "verdict given twice"),
    ("[A]\nua = Bot\n", 1, "[A] has no verdict"),
    ("[A\n", 1, "a section header is [name]"),
    ("[A]\nverdict scanner\n", 2, "expected 'key = value'"),
])
def test_a_bad_rules_file_names_file_and_line(tmp_path, text, line, message):
    with pytest.raises(RulesError) as info:
        rules_from(tmp_path, text)
    assert str(info.value).startswith(f"{tmp_path / 'rules0.conf'}:{line}: ")
    assert message in str(info.value)


def test_a_missing_rules_file_is_named(tmp_path):
    with pytest.raises(RulesError, match="missing.conf: cannot read the rules file"):
        machines.load([str(tmp_path / "missing.conf")])


def test_an_operator_file_extends_the_shipped_one(tmp_path):
    extra = tmp_path / "local.conf"
    extra.write_text("[Microsoft Safe Links]\nnet = 198.51.100.0/24  # our own relay\n"
                     "[Gmail image proxy]\nverdict = privacy_proxy\n"
                     "[Link checker]\nverdict = scanner\nevents = click\nua = (?i)^LinkCheck/\n")
    rules = machines.load([str(SHIPPED), str(extra)])
    assert [hit.reason for hit in rules.match("click", "198.51.100.9", "")] == \
        ["network 198.51.100.0/24 (Microsoft Safe Links)"]
    assert rules.match("click", "40.107.1.1", "")  # the shipped networks are still there
    gmail = "Mozilla/5.0 (via ggpht.com GoogleImageProxy)"
    assert classify(Facts("open", user_agent=gmail, age=600.0), rules, LIMITS).verdict == "privacy_proxy"
    assert classify(Facts("click", user_agent="linkcheck/2", age=600.0), rules, LIMITS).verdict == "scanner"
    assert classify(Facts("open", user_agent="LinkCheck/2", age=600.0), rules, LIMITS).verdict == "human"


def test_networks_nested_and_overlapping_all_match(tmp_path):
    rules = rules_from(tmp_path, "[Wide]\nverdict = human\nnet = 10.0.0.0/8, 2001:db8::/32\n"
                                 "[Narrow]\nverdict = scanner\nnet = 10.1.2.0/24 10.1.2.3/32\n")
    reasons = [hit.reason for hit in rules.match("open", "10.1.2.3", "")]
    assert reasons == ["network 10.1.2.3/32 (Narrow)", "network 10.1.2.0/24 (Narrow)",
                       "network 10.0.0.0/8 (Wide)"]
    assert [hit.machine for hit in rules.match("open", "2001:db8:ffff::1", "")] == ["Wide"]
    assert rules.match("open", "11.0.0.1", "") == []
    assert rules.match("open", "not an address", "") == []
    assert rules.match("open", "", "") == []
    wide = rules_from(tmp_path, "[Half]\nverdict = scanner\nnet = 128.0.0.0/1 10.0.0.0/8\n")
    assert [hit.reason for hit in wide.match("open", "200.1.1.1", "")] == \
        ["network 128.0.0.0/1 (Half)"]  # wider than /8: no first-octet shortcut


def test_a_long_network_list_is_looked_up_by_prefix_length_not_entry(tmp_path):
    nets = " ".join(f"10.{i // 256}.{i % 256}.0/24" for i in range(20000))
    rules = rules_from(tmp_path, f"[Many]\nverdict = scanner\nnet = {nets}\n")
    assert [hit.reason for hit in rules.match("click", "10.78.31.200", "")] == \
        ["network 10.78.31.0/24 (Many)"]
    assert len(rules._tables[32]) == 1  # one prefix length: one dictionary lookup


def test_user_agent_results_are_cached_per_user_agent():
    RULES._ua_hits.cache_clear()
    for _ in range(3):
        RULES.match("open", "", "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html")
    assert RULES._ua_hits.cache_info().hits == 2


def test_engage_verdicts_check_and_classify(tmp_path):
    conf = tmp_path / "e.conf"
    conf.write_text("")
    run = [sys.executable, "-m", "engage.admin.cli", "verdicts", "--config", str(conf)]
    check = subprocess.run([*run, "check"], capture_output=True, text=True, timeout=60, env=ENV)
    assert check.returncode == 0 and check.stdout.startswith("ok: 7 machines"), check.stderr
    trial = subprocess.run([*run, "classify", "--ip", "40.107.3.3", "--method", "HEAD"],
                           capture_output=True, text=True, timeout=60, env=ENV)
    assert trial.stdout.splitlines() == ["scanner", "  HEAD request",
                                         "  network 40.107.0.0/16 (Microsoft Safe Links)"]


def test_a_bad_rules_file_stops_the_command_with_exit_78(tmp_path):
    bad = tmp_path / "local.conf"
    bad.write_text("[Mine]\nverdict = scanner\nnet = 300.1.1.1/8\n")
    conf = tmp_path / "e.conf"
    conf.write_text(f"[verdicts]\nextra_rules = {bad}\n")
    result = subprocess.run([sys.executable, "-m", "engage.admin.cli", "verdicts", "--config", str(conf),
                             "check"], capture_output=True, text=True, timeout=60, env=ENV)
    assert result.returncode == 78
    assert f"engage verdicts: {bad}:3: net '300.1.1.1/8'" in result.stderr
    assert "Traceback" not in result.stderr
