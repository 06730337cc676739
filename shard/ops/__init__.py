"""The core wire ops of a shard, one module per resource; handlers register with ``@handles``."""
