"""dlog: a durable log with Apache Kafka's delivery semantics, kept in SQLite, spoken to over HTTP.

The domain packages under ``service`` never import Flask; ``service.api`` is the HTTP layer.
"""
