"""A storage shard: the only writer of its LMDB environment and blob directory."""
