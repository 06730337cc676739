"""zot's extensions, one module each; their routes exist only when the config switches them on
(the ``extension`` column of :data:`gateway.routes.ROUTES`).

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
"""
