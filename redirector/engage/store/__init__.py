"""The one Redis schema and the data on it: key families (keys), Lua scripts, the link
store the milter writes, the event log the redirector appends to, and the aggregates.

The shared core: the milter imports only this package and engage.settings. Nothing here
imports Flask or any other engage package but settings."""
