"""Python re-implementation of the OCI distribution-spec conformance suites, run against a real cluster.

* ``test_legacy_0[1-4]_*.py`` — the legacy ginkgo suite (v1.1.1 / 6a670ad): 79 specs, in order, one
  namespace, state carried between specs and suites (Pull 24, Push 29, Content Discovery 16,
  Content Management 10).
* ``test_v2_*.py`` — the redesigned data-driven suite (HEAD 967efdc): ping, empty repository, the blob
  APIs for sha256 and sha512, every data set for sha256 and sha512, manifest error conditions.

``ociapi.py`` performs the suites' request sequences and collects every deviation of a sequence;
``testdata.py`` / ``legacydata.py`` generate the suites' data. Checks are the suites' own, plus a few
stricter ones the spec requires (Docker-Content-Digest on pulls and pushes, ``Range`` on PATCH 202,
201 for single-POST and mount where the suite only downgrades a 202 to "unsupported").
"""
