"""SparkPost-compatible event webhooks: a separate worker posts batches of engagement events.

``config`` (what a webhook is), ``payload`` (SparkPost's batch body), ``signature``
(our optional HMAC header), ``auth`` and ``transport`` (one POST), ``queue`` (the
durable batches in Redis), ``store`` (webhooks, status, dead letters), ``worker``
(``engage-webhooks run``) and ``cli`` (``engage-webhooks``). Nothing here imports Flask.
"""
