"""Moving layout-1 keys into their layout-2 shards, a SCAN chunk at a time (``engage
migrate-layout``, engage.admin.migrate).

Every move survives a crash at any point and counts nothing twice on a rerun:
- message records and templates (strings): the layout-2 copy is SET (templates NX: a copy
  that exists has the same content, its id is a hash of it), then the source is deleted
  only if it still holds what was copied (a script in the source's slot). A rerun after
  a crash copies the same value again; a source changed meanwhile stays for the next run.
- status hashes and aggregates (merged into what layout 2 may hold already): the source
  is DUMPed and RESTOREd beside its destination as ``<destination>:migrating`` (same
  slot), the source deleted if unchanged, the copy renamed ``<destination>:merging``
  and merged into the destination a chunk at a time (engage.admin.migrate_scripts).
  ``sweep`` finishes what an interrupted run left: every ``:merging`` copy is merged
  (even if a click wrote a new source since), a ``:migrating`` one too when its source
  is gone, and dropped when it is still there (its move is redone).
Templates are copied into the shard of every message of theirs as the message moves, and
their layout-1 copies deleted last.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from engage.admin.migrate_scripts import COMMIT_LUA, DELETE_IF_SAME_LUA, MERGE_LUA
from engage.admin.purge import match_pattern
from engage.store import aggregates, keys
from engage.store.records import MessageRecord
from engage.store.redisconn import hash_tag, is_cluster, queue_script

STAGING = ":migrating"  # a copy of a source not yet deleted
MERGING = ":merging"  # a copy whose source is deleted: merged whatever happens
MERGE_CHUNK = 500  # fields or members per merge script call
MAX_MERGE_CALLS = 100_000  # a bound on one key's merge loop (a 50 M field hash)


@dataclass
class Moved:
    messages: int = 0
    statuses: int = 0
    aggregates: int = 0
    templates: int = 0  # layout-1 templates deleted, each copied where it is needed
    template_copies: int = 0  # copies written into shards
    resumed: int = 0  # staging copies of an interrupted run merged
    changed: int = 0  # sources that changed while being copied: left for the next run


def aggregate_shard(hour: str) -> int:
    """Where an old hour's aggregates go: hours round-robin over the shards, so that a
    year of old counters spreads over the masters like everything else (the metrics API
    sums every shard, so any shard would count the same)."""
    try:
        return aggregates.hour_start(hour) // aggregates.HOUR % keys.SHARDS
    except ValueError:
        return 0


def merge_mode(name: str) -> str:
    """The merge of a layout-1 name (after the prefix): a status hash, a set or counters."""
    return "status" if name.startswith("ms:") else "set" if name.startswith("agg:d:") else "counters"


class Mover:
    """Moves the layout-1 keys under ``source`` into layout 2 under ``prefix``."""

    def __init__(self, client: Any, source: str, prefix: str, batch: int) -> None:
        self.client, self.source, self.prefix, self.batch = client, source, prefix, batch
        self.moved = Moved()
        self.copied: set[tuple[str, int]] = set()  # (template id, shard) known to hold it
        self._delete_if_same = client.register_script(DELETE_IF_SAME_LUA)
        self._merge = client.register_script(MERGE_LUA)
        self._commit_copy = client.register_script(COMMIT_LUA)

    # ------------------------------------------------------------------ scanning
    def nodes(self, prefix: str) -> list[Any]:
        """The nodes whose keys a SCAN must read: on a cluster, the master of a tagged
        prefix's slot, or every master."""
        if not is_cluster(self.client):
            return [self.client]
        if hash_tag(prefix):
            return [self.client.get_redis_connection(self.client.get_node_from_key(prefix))]
        return [self.client.get_redis_connection(node) for node in self.client.get_primaries()]

    def scan(self, prefix: str, pattern: str) -> Iterator[list[str]]:
        """Names matching ``prefix`` (escaped) + ``pattern``, a SCAN chunk at a time."""
        match = match_pattern(prefix)[:-1] + pattern
        for node in self.nodes(prefix):
            cursor = 0
            while True:
                cursor, found = node.scan(cursor, match=match, count=self.batch)
                names = [name.decode("utf-8", "replace") for name in found]
                yield [name for name in names if "\ufffd" not in name]
                if cursor == 0:
                    break

    def layout1(self, head: str, *families: str) -> Iterator[list[str]]:
        """Layout-1 names of these families (``head``: their first characters after the
        prefix), a chunk at a time."""
        for names in self.scan(self.source, head + "*"):
            chosen = [name for name in names if keys.shard_of_key(self.source, name) == keys.LAYOUT1
                      and _family(self.source, name) in families]
            if chosen:
                yield chosen

    # ------------------------------------------------------------------ message records
    def messages(self) -> None:
        for names in self.layout1("m:", "message"):
            values = self._read(names, "get")
            found = [(name, value, ttl) for name, (value, ttl) in zip(names, values) if value is not None]
            moves = [(name, name[len(self.source) + 2:], value, ttl) for name, value, ttl in found]
            self.need_templates({(_template_id(value), keys.shard_of(key)) for _, key, value, _ in moves})
            pipe = self.client.pipeline(transaction=False)
            for _, key, value, ttl in moves:
                pipe.set(keys.message(self.prefix, key), value, px=ttl if ttl > 0 else None)
            pipe.execute()
            results = self._delete_sources([(name, value) for name, value, _ in found], "get")
            self._tally("messages", results)

    def _read(self, names: list[str], how: str) -> list[tuple[Any, int]]:
        """(value or DUMP payload, PTTL in ms) of each name; (None, -2) when it is gone."""
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            getattr(pipe, how)(name)
            pipe.pttl(name)
        replies = pipe.execute()
        return [(value, ttl) if value is not None and ttl != -2 else (None, -2)
                for value, ttl in zip(replies[::2], replies[1::2])]

    def _delete_sources(self, copied: list[tuple[str, Any]], how: str) -> list[int]:
        pipe = self.client.pipeline(transaction=False)
        for name, value in copied:
            queue_script(self._delete_if_same, pipe, [name], [value, how])
        return [int(result) for result in pipe.execute()]

    def _tally(self, field: str, results: Iterable[int]) -> None:
        for result in results:
            if result:
                setattr(self.moved, field, getattr(self.moved, field) + 1)
            else:
                self.moved.changed += 1

    # ------------------------------------------------------------------ templates
    def need_templates(self, needs: set[tuple[str, int]]) -> None:
        """A copy of each template in each shard named, before the messages move there."""
        needs = {need for need in needs if need[0] and need not in self.copied}
        if not needs:
            return
        sources = self.template_sources(sorted({tid for tid, _ in needs}))
        self._copy_templates([(tid, shard, *sources[tid]) for tid, shard in sorted(needs)
                              if tid in sources])

    def template_sources(self, ids: list[str]) -> dict[str, tuple[bytes, int]]:
        """Each template's layout-1 value and PTTL; else a copy in some shard (one that a
        message of it already moved to): else it is gone and its links were dead already."""
        names = [keys.template(self.source, tid, keys.LAYOUT1) for tid in ids]
        found = {tid: got for tid, got in zip(ids, self._read(names, "get")) if got[0] is not None}
        for tid in (tid for tid in ids if tid not in found):
            copies = self._read([keys.template(self.prefix, tid, s) for s in keys.shard_ids()], "get")
            for got in copies:
                if got[0] is not None:
                    found[tid] = got
                    break
        return found

    def _copy_templates(self, copies: list[tuple[str, int, bytes, int]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for tid, shard, value, ttl in copies:
            pipe.set(keys.template(self.prefix, tid, shard), value, px=ttl if ttl > 0 else None,
                     nx=True)
        for (tid, shard, _, _), written in zip(copies, pipe.execute()):
            self.copied.add((tid, shard))
            self.moved.template_copies += bool(written)

    def templates(self) -> None:
        """Last: the layout-1 templates, once every message of theirs has moved. One that no
        shard holds yet (its messages expired) is copied into every shard, since a link may
        outlive its record."""
        for names in self.layout1("t:", "template"):
            ids = [name[len(self.source) + 2:] for name in names]
            held = self._held(ids)
            orphans = [tid for tid in ids if not held[tid]]
            sources = self.template_sources(orphans) if orphans else {}
            self._copy_templates([(tid, shard, *sources[tid]) for tid in orphans if tid in sources
                                  for shard in keys.shard_ids()])
            pipe = self.client.pipeline(transaction=False)
            for name in names:
                pipe.delete(name)
            self.moved.templates += sum(int(n) for n in pipe.execute())

    def _held(self, ids: list[str]) -> dict[str, bool]:
        """Whether some shard holds a copy of each template (known from this run, else asked)."""
        held = {tid: any((tid, s) in self.copied for s in keys.shard_ids()) for tid in ids}
        unknown = [tid for tid in ids if not held[tid]]
        pipe = self.client.pipeline(transaction=False)
        for tid in unknown:
            for shard in keys.shard_ids():
                pipe.exists(keys.template(self.prefix, tid, shard))
        replies = pipe.execute() if unknown else []
        for n, tid in enumerate(unknown):
            held[tid] = any(replies[n * keys.SHARDS:(n + 1) * keys.SHARDS])
        return held

    # ------------------------------------------------------------------ merged families
    def statuses(self) -> None:
        for names in self.layout1("ms:", "status"):
            self._stage_and_merge(names, [keys.status(self.prefix, name[len(self.source) + 3:])
                                          for name in names], "statuses")

    def aggregates(self) -> None:
        for names in self.layout1("agg:", "aggregates", "recipient domains"):
            self._stage_and_merge(names, [self._aggregate_dest(name) for name in names],
                                  "aggregates")

    def _aggregate_dest(self, name: str) -> str:
        _, kind, hour = name[len(self.source):].split(":", 2)
        return keys.aggregate(self.prefix, aggregate_shard(hour), kind, hour)

    def _stage_and_merge(self, names: list[str], dests: list[str], field: str) -> None:
        dumps = self._read(names, "dump")
        staged = [(name, dest, value, ttl) for name, dest, (value, ttl) in zip(names, dests, dumps)
                  if value is not None]
        pipe = self.client.pipeline(transaction=False)
        for _, dest, value, ttl in staged:
            pipe.restore(dest + STAGING, max(ttl, 0), value, replace=True)
        pipe.execute()
        results = self._delete_sources([(name, value) for name, _, value, _ in staged], "dump")
        self._commit([(dest, bool(result)) for (_, dest, _, _), result in zip(staged, results)])
        self.merge([(dest, merge_mode(name[len(self.source):]))
                    for (name, dest, _, _), result in zip(staged, results) if result])
        self._tally(field, results)

    def _commit(self, staged: list[tuple[str, bool]]) -> None:
        """A staging copy whose source is deleted becomes ``<dest>:merging`` (merged even
        if a new source appears); one whose source changed meanwhile is dropped."""
        pipe = self.client.pipeline(transaction=False)
        for dest, deleted in staged:
            queue_script(self._commit_copy, pipe, [dest + STAGING, dest + MERGING], [int(deleted)])
        pipe.execute()

    def merge(self, moves: list[tuple[str, str]]) -> None:
        """Merge each ``<dest>:merging`` into ``dest``: one script per key in one pipeline
        (a small hash is done at once), then the big ones a chunk at a time."""
        pipe = self.client.pipeline(transaction=False)
        for dest, mode in moves:
            queue_script(self._merge, pipe, [dest + MERGING, dest], [mode, 0, MERGE_CHUNK])
        for (dest, mode), (cursor, left) in zip(moves, pipe.execute() if moves else []):
            calls = 0
            while int(left) and calls < MAX_MERGE_CALLS:
                cursor, left = self._merge(keys=[dest + MERGING, dest], args=[mode, cursor, MERGE_CHUNK])
                calls += 1

    def sweep(self) -> None:
        """Finish an interrupted run's copies (before anything else moves): merge every
        ``:merging`` one, and a ``:migrating`` one whose source is gone; drop the others."""
        for names in self.scan(self.prefix, "*:m*ing"):
            tagged = [name for name in names if keys.shard_of_key(self.prefix, name) != keys.LAYOUT1]
            merging = [name[:-len(MERGING)] for name in tagged if name.endswith(MERGING)]
            staged = [name[:-len(STAGING)] for name in tagged if name.endswith(STAGING)]
            pipe = self.client.pipeline(transaction=False)
            for dest in staged:
                pipe.exists(self._source_of(dest))
            gone = [not there for there in (pipe.execute() if staged else [])]
            self._commit(list(zip(staged, gone)))
            dests = merging + [dest for dest, deleted in zip(staged, gone) if deleted]
            self.merge([(dest, merge_mode(dest[len(self.prefix) + 4:])) for dest in dests])
            self.moved.resumed += len(dests)

    def _source_of(self, dest: str) -> str:
        """The layout-1 name of a destination: the same name without its shard tag."""
        return self.source + dest[len(self.prefix) + 4:]


def _family(prefix: str, name: str) -> str:
    family = keys.family_of(prefix, name)
    return family.name if family else ""


def _template_id(value: bytes) -> str:
    try:
        return MessageRecord.from_text(value).template_id
    except (ValueError, KeyError, TypeError):
        return ""  # not a record engage wrote: it moves all the same
