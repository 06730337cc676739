"""``settings``: the typed ``http.auth`` / ``http.accessControl`` / ``http.ratelimit`` config.

Authentication and authorization themselves live in :mod:`gateway.auth`.
"""
