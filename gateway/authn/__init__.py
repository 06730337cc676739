"""Authentication and authorization building blocks, one module per concern.

``htpasswd``  bcrypt password files (read, verify, reload on change, edit)
``bearer``    Docker token authentication: verifying JWTs and issuing them (built-in token endpoint)
``apikeys``   zot API keys (``zak_...``) stored hashed on the user's shard
``sessions``  signed session cookies backed by records on the user's shard
``policy``    ``http.accessControl``: which identity may do what on which repository
``ratelimit`` per-client token buckets (failed logins, ``http.ratelimit``)

:mod:`gateway.auth` ties them together behind ``AccessControl.authorize``.
"""
