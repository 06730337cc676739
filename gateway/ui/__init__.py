"""The web UI (``extensions.ui``): server-rendered pages at ``/`` and under ``/ui/``.

Every page runs under the caller's identity and asks what a client would ask (the GraphQL
search resolvers, the userprefs, API key and session operations, the distribution delete),
so the UI sees exactly what the user may see (docs/ui.md).
"""
