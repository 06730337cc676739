"""The HTTP gateway: authenticates, validates and routes each request to the shard that owns it."""
