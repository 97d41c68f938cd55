"""`lockbridge fleet`: the operator's backend for many bridges on NATS JetStream and PostgreSQL
(docs/fleet.md)."""
