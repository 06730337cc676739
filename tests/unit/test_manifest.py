import json

import pytest

from common.errors import ErrorCode, RegistryError
from common.grammar import MediaType, digest_of
from common.manifest import parse_manifest

CONFIG = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(b"c"), "size": 1}
LAYER = {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest_of(b"l"), "size": 1}


def body(**doc):
    return json.dumps({"schemaVersion": 2, **doc}).encode()


def test_image_manifest():
    p = parse_manifest(body(mediaType=MediaType.OCI_MANIFEST, config=CONFIG, layers=[LAYER, LAYER]),
                       MediaType.OCI_MANIFEST)
    assert p.media_type == MediaType.OCI_MANIFEST
    assert p.blobs == [CONFIG["digest"], LAYER["digest"]]
    assert p.artifact_type == CONFIG["mediaType"]


def test_media_type_from_body_or_header():
    assert parse_manifest(body(config=CONFIG, layers=[]), MediaType.OCI_MANIFEST).media_type == MediaType.OCI_MANIFEST
    assert parse_manifest(body(mediaType=MediaType.OCI_INDEX, manifests=[]), None).media_type == MediaType.OCI_INDEX
    with pytest.raises(RegistryError) as info:
        parse_manifest(body(mediaType=MediaType.OCI_INDEX, manifests=[]), MediaType.OCI_MANIFEST)
    assert info.value.code == ErrorCode.MANIFEST_INVALID


def test_index_subject_artifact():
    child = {"mediaType": MediaType.OCI_MANIFEST, "digest": digest_of(b"m"), "size": 3}
    p = parse_manifest(body(mediaType=MediaType.OCI_INDEX, manifests=[child], subject=child,
                            artifactType="application/x-a", annotations={"k": "v"}), MediaType.OCI_INDEX)
    assert p.children == [child["digest"]] and p.blobs == [] and p.subject == child["digest"]
    assert p.artifact_type == "application/x-a" and p.annotations == {"k": "v"}


def test_nondistributable_layers_need_no_blob():
    foreign = dict(LAYER, urls=["https://example.com/x"])
    p = parse_manifest(body(mediaType=MediaType.OCI_MANIFEST, config=CONFIG, layers=[foreign]), None)
    assert p.blobs == [CONFIG["digest"]]


@pytest.mark.parametrize("raw", [b"", b"nope", b"[]", body(schemaVersion=1), body(config=CONFIG, layers={}),
                                 body(config=dict(CONFIG, size="1"), layers=[]),
                                 body(config=dict(CONFIG, digest="sha256:x"), layers=[]),
                                 body(config=CONFIG, layers=[], annotations={"a": 1}),
                                 body(mediaType=MediaType.OCI_INDEX, manifests=None),
                                 # a lone surrogate, escaped or as raw bytes: not text
                                 body(config=CONFIG, layers=[], annotations={"a": "\ud800"}),
                                 body(config=CONFIG, layers=[], annotations={"\udc00": "b"}),
                                 body(config=CONFIG, layers=[], artifactType="x").replace(b'"x"', b'"\xed\xa0\x80"')])
def test_invalid(raw):
    with pytest.raises(RegistryError) as info:
        parse_manifest(raw, None)
    assert info.value.status == 400


def test_unsupported_type_is_415():
    with pytest.raises(RegistryError) as info:
        parse_manifest(body(mediaType=MediaType.DOCKER_MANIFEST_V1_SIGNED), MediaType.DOCKER_MANIFEST_V1_SIGNED)
    assert info.value.status == 415
