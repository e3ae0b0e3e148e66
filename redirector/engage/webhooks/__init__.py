"""SparkPost-compatible event webhooks: a separate worker posts batches of engagement events.

``config`` (what a webhook is), ``payload`` (SparkPost's batch body), ``signature``
(our optional HMAC header), ``auth`` and ``transport`` (one POST), ``queue`` (the
durable batches in Redis, per shard), ``store`` (webhooks, status, dead letters),
``schedule`` (which shard a loop serves next, and how it sleeps), ``worker``
(``engage-webhooks run``) and ``cli`` (``engage-webhooks``). Nothing here imports Flask.
"""
