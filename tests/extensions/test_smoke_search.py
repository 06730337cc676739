from tests.extensions.conftest import gql


def test_repo_list(ext_client, pushed):
    out = gql(ext_client, "{ RepoListWithNewestImage { Page { TotalCount ItemCount } Results { Name Size NewestImage { Tag Digest IsSigned SignatureInfo { Tool IsTrusted Author } } } } }")
    print(out)
    assert "errors" not in out
