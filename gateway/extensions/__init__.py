"""zot's extensions, one module each, registered only when the config switches them on.

=====================  ===========================================  =================================
module                 endpoints                                    switched on by
=====================  ===========================================  =================================
discover               ``/v2/_oci/ext/discover``                    always (lists what is on)
search                 ``/v2/_zot/ext/search`` (GraphQL)            ``extensions.search.enable``
mgmt                   ``/v2/_zot/ext/mgmt``                        search, or ``extensions.mgmt``
userprefs              ``/v2/_zot/ext/userprefs``                   search **and** ``extensions.ui``
trust                  ``/v2/_zot/ext/cosign``, ``.../notation``    ``extensions.trust.{cosign,notation}``
oras                   ``/oras/artifacts/v1/.../referrers``         always
pprof                  ``/v2/_zot/pprof/``                          always (``extensions.profiling``)
openapi, playground    ``/swagger/v2/``, ``.../graphql-playground``  ``extensions.debug.enable``
=====================  ===========================================  =================================

:func:`register_extensions` is called once by ``gateway.app.build_quart``.
"""

from __future__ import annotations

import logging

from quart import Quart

from common.config import ExtensionsConfig
from gateway.extensions.common import EXTENSIONS_KEY
from gateway.state import GatewayState

log = logging.getLogger("shardreg.gateway.extensions")


def register_extensions(app: Quart, state: GatewayState) -> ExtensionsConfig:
    ext = state.config.extensions
    app.config[EXTENSIONS_KEY] = ext
    from gateway.extensions import discover, oras

    app.register_blueprint(discover.blueprint)
    app.register_blueprint(oras.blueprint)
    if ext.search_enabled:
        from gateway.extensions import search

        app.register_blueprint(search.blueprint)
    if ext.mgmt_enabled:
        from gateway.extensions import mgmt

        app.register_blueprint(mgmt.blueprint)
    if ext.userprefs_enabled:
        from gateway.extensions import userprefs

        app.register_blueprint(userprefs.blueprint)
    if ext.trust_enabled:
        from gateway.extensions import trust

        if ext.cosign_enabled:
            app.register_blueprint(trust.cosign_blueprint)
        if ext.notation_enabled:
            app.register_blueprint(trust.notation_blueprint)
    if ext.profiling:
        from gateway.extensions import pprof

        app.register_blueprint(pprof.blueprint)
    if ext.debug:
        from gateway.extensions import openapi, playground

        app.register_blueprint(openapi.blueprint)
        if ext.search_enabled:
            app.register_blueprint(playground.blueprint)
    return ext
