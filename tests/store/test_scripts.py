"""The store's Lua scripts: the click lookup's reply by name, and the append script built
from its named parts (the aggregates' update and the index functions defined first)."""
from __future__ import annotations

from engage.store.scripts.aggregates import UPDATE_CALL, UPDATE_FUNCTION
from engage.store.scripts.clicks import ClickLookup, ClickState
from engage.store.scripts.eventindex import INDEX_FUNCTIONS
from engage.store.scripts.events import APPEND_LUA


def test_the_click_lookup_reply_is_read_by_name():
    counted = ClickLookup.from_reply([b"rec", b"tpl", 1, 1, 3, 0, 7, 1, b"base"])
    assert (counted.record, counted.template, counted.counted, counted.base) == (
        b"rec", b"tpl", 7, b"base")
    state = ClickState.from_reply(counted.state)
    assert state is not None and (state.links, state.after_trap) == (3, 0)
    refused = ClickLookup.from_reply([b"rec", None, None, None, None, 1, None, None, None])
    assert refused.template is None and refused.counted is None and refused.base is None
    assert ClickState.from_reply(refused.state) == ClickState(None, None, None, 1)
    assert ClickState.from_reply(()) is None  # a lookup that added no click state


def test_the_append_script_defines_the_aggregates_update_before_it_calls_it():
    assert APPEND_LUA.startswith(INDEX_FUNCTIONS + UPDATE_FUNCTION)
    assert APPEND_LUA.count("update_aggregates(") == 2  # the definition and the one call
    assert UPDATE_CALL in APPEND_LUA
