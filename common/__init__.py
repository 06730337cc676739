"""Code shared by gateways and shards: config, wire protocol, routing, grammars, errors, CLI."""
