"""The milter's writes wait for the AOF fsync where Redis can confirm it (WAITAOF, 7.2+)."""
from __future__ import annotations

import pytest

from engage.store import durable
from engage.store.durable import AofWait, can_wait, version_tuple
from engage.store.links import LinkStore, MessageRecord, StoreError, Template, new_message_key


@pytest.mark.parametrize("version, aof, expected", [
    ("7.2.4", 1, True), ("8.0.0", 1, True), ("7.2.0-rc1", 1, True), ("7.0.15", 1, False),
    ("6.2.14", 1, False), ("7.4.1", 0, False)])
def test_waitaof_needs_redis_7_2_with_aof(version, aof, expected):
    assert can_wait({"redis_version": version, "aof_enabled": aof}) is expected
    assert version_tuple("7.2.4") == (7, 2, 4)


def test_the_local_redis_version_decides(redis_client, caplog):
    """The test Redis runs with AOF; whether WAITAOF is sent follows its version."""
    info = redis_client.info("server")
    expected = version_tuple(info["redis_version"]) >= (7, 2)
    assert AofWait(redis_client).applies() is expected
    if not expected:
        assert "appendfsync always" in caplog.text


class FakePipe:
    def __init__(self):
        self.commands = []

    def execute_command(self, *args):
        self.commands.append(args)


class Newer:
    """A client that says it is Redis 7.2 with AOF on."""

    def info(self, section):
        return {"redis_version": "7.2.4"} if section == "server" else {"aof_enabled": 1}


def test_waitaof_is_queued_and_its_answer_checked():
    wait = AofWait(Newer())
    pipe = FakePipe()
    assert wait.queue(pipe) and pipe.commands == [("WAITAOF", 1, 0, durable.WAITAOF_MS)]
    assert wait.confirmed([1, 0]) and not wait.confirmed([0, 0])
    assert not AofWait(Newer(), enabled=False).queue(FakePipe())


def test_register_tempfails_when_the_fsync_is_not_confirmed(redis_client, monkeypatch):
    """Redis 7.0 has no WAITAOF: pretend the answer came back 0 local fsyncs."""
    store = LinkStore(redis_client, "t:", durable=True)
    monkeypatch.setattr(store.aof, "queue", lambda pipe: pipe.execute_command("PING") or True)
    monkeypatch.setattr(store.aof, "confirmed", lambda reply: False)
    template = Template(links=(), campaign_id="c")
    record = MessageRecord(rcpt_to=("a@example.com",), template_id=template.template_id)
    with pytest.raises(StoreError, match="AOF fsync"):
        store.register(new_message_key(), template, record)
