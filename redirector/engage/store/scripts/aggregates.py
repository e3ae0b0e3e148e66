"""The hourly aggregates' update (engage.store.aggregates), as a Lua function that the
event append (events.APPEND_LUA) defines and calls: its inputs are parameters, not the
caller's locals."""
from __future__ import annotations

# update_aggregates(score, new, n): called by APPEND_LUA after the status hash update,
# with ``score`` (the event_id), ``new`` (1 when this event set opened_at/clicked_at) and
# ``n`` (the kind's count after this event). KEYS[2] status hash, KEYS[3] engagement hash,
# KEYS[4] link hash; ARGV[5] kind (o, i, c), ARGV[8] '|<c>|<d>', ARGV[9] '1' for a human,
# ARGV[10] '|<c>|<d>|<link>', ARGV[11] link id, ARGV[12] expiry (unix time)
# (engage.store.aggregates.update_keys_args).
UPDATE_FUNCTION = """
local function update_aggregates(score, new, n)
  local st, e, l, dims, human = KEYS[2], KEYS[3], KEYS[4], ARGV[8], ARGV[9] == '1'
  local fresh = {}  -- a counter that starts at 1 may be the key's first: set its expiry
  local function bump(key, field) if redis.call('HINCRBY', key, field, 1) == 1 then fresh[key] = 1 end end
  local function add(code) bump(e, code .. dims) end
  local function link(code) bump(l, code .. ARGV[10]) end
  local function once(flag) return redis.call('HSETNX', st, flag, score) == 1 end
  local function lacks(flag) return redis.call('HEXISTS', st, flag) == 0 end
  if ARGV[5] == 'c' then
    add('c') link('c')
    if new == 1 then add('uc') if lacks('opened_at') then add('uo') end end
    if once('k' .. ARGV[11]) then link('uc') end
    if human then
      add('nc') link('nc')
      if once('hc') then add('nuc') if lacks('hr') then add('nuo') end end
      if once('hk' .. ARGV[11]) then link('nuc') end
    end
  else
    add('r')
    if new == 1 then add('ur') if lacks('clicked_at') then add('uo') end end
    if ARGV[5] == 'i' then add('i') if n == 1 then add('ui') end end
    if human then
      add('nr')
      if once('hr') then add('nur') if lacks('hc') then add('nuo') end end
      if ARGV[5] == 'i' then add('ni') if once('hi') then add('nui') end end
    end
  end
  for key in pairs(fresh) do redis.call('EXPIREAT', key, ARGV[12]) end
end
"""
UPDATE_CALL = "    update_aggregates(score, new, n)\n"
