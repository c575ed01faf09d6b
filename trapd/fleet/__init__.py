"""Fleet integration: telemetry over MQTT and image sync over the S3 API.

Offline-first: capture writes to tables in the queue's SQLite index
(`outbox.py`); a drainer empties them when a link is up (`telemetry.py`,
`sync.py`). Nothing here is on the capture path except a local INSERT.
"""
