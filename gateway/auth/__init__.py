"""Authentication and authorization, one module per concern.

``access``     ``AccessControl``: who is calling, and ``authorize``, the one decision point
               every route calls (repository actions, login, catalog, admin, metrics)
``identity``   the caller (:class:`Identity`) and request-header access
``routes``     zot's ``/zot/auth/{login,logout,apikey}`` and the built-in ``/auth/token``
``passwords``  the one check every presented password goes through (limits, delay, log, timing)
``htpasswd``   bcrypt password files (read, verify, reload on change, edit)
``removal``    users gone from htpasswd: their API keys and sessions deleted on their shard
``csrf``       cookie-authenticated state-changing requests from another site are refused
``bearer``     Docker token authentication: verifying JWTs and issuing them
``apikeys``    zot API keys (``zak_...``) stored hashed on the user's shard
``sessions``   signed session cookies backed by records on the user's shard
``policy``     ``http.accessControl``: which identity may do what on which repository
``mtls``       the identity a verified client certificate names
``tls``        Hypercorn hook exposing the client certificate of a TLS connection
``ratelimit``  per-client token buckets (failed logins, ``http.ratelimit``)
``users``      ``shardreg user add|remove|list`` (htpasswd files)
``ldap``       passwords checked against an LDAP directory (thread pool, pooled connections, bind cache)
``jwks``       an OpenID issuer's discovery document and signing keys, fetched and cached
``workload``   OIDC ID tokens of CI jobs (``bearer.oidc``): verification and CEL claim mapping
``oidc_login`` the OpenID Connect / OAuth2 browser login (``/zot/auth/login?provider=``, callback)

The typed config these read is :mod:`common.config` (``Config.http.auth``, ``.access_control``,
``.ratelimit``).
"""
