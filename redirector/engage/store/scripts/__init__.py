"""The Redis Lua scripts of the store, the click path and the metrics, one module per key
family, next to the key registry (engage.store.keys) that names their KEYS. Erasure's own
scripts stay in engage.erasure.lua. A script whose reply other modules read has a named
result beside it (clicks.ClickLookup)."""
