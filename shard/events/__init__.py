"""Lifecycle events: a durable outbox in the shard's LMDB and the senders that drain it to sinks."""
