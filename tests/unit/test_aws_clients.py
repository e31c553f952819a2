"""`new_session`: sessions of their own (credentials, region) over one service model loader."""

from __future__ import annotations

from atrest.core.clients import AwsClients, new_session


def test_sessions_share_one_loader_whose_search_path_does_not_grow():
    first = new_session(region_name="us-east-1")
    paths = list(first._session.get_component("data_loader").search_paths)

    others = [new_session(region_name="eu-west-1", aws_access_key_id="a", aws_secret_access_key="b") for _ in range(5)]

    loaders = {id(s._session.get_component("data_loader")) for s in [first, *others]}
    assert len(loaders) == 1
    assert first._session.get_component("data_loader").search_paths == paths
    assert len(paths) == len(set(paths))
    # Still sessions of their own: options are not shared.
    assert first.region_name == "us-east-1" and others[0].region_name == "eu-west-1"
    assert others[0].get_credentials().access_key == "a"


def test_clients_of_separate_aws_clients_load_the_same_service_model_once():
    one, two = AwsClients(new_session(region_name="us-east-1")), AwsClients(new_session(region_name="us-east-1"))

    assert one.s3.meta.service_model.service_name == "s3"
    # The loader's cache hands both clients the very same parsed model document.
    assert one.s3.meta.service_model._service_description is two.s3.meta.service_model._service_description
    assert one.s3 is not two.s3


def test_sessions_atrest_does_not_build_share_the_loader_too():
    # The X-Ray SDK's sampling client (Powertools' Tracer) is built on a plain botocore
    # session: with a loader of its own it parsed endpoints.json and the rest a second time.
    import boto3
    import botocore.session

    from atrest.core.clients import shared_loader

    plain = botocore.session.Session()
    assert plain.get_component("data_loader") is shared_loader()
    assert plain.create_client("xray", region_name="us-east-1").meta.service_model.service_name == "xray"

    # boto3 sessions built outside new_session append boto3's data path to the shared loader:
    # it is kept once, however many there are.
    boto3.session.Session(region_name="us-east-1")
    paths = list(shared_loader().search_paths)
    for _ in range(3):
        boto3.session.Session(region_name="us-east-1")
    assert shared_loader().search_paths == paths
    assert len(paths) == len(set(paths))


def test_a_session_with_a_data_path_of_its_own_keeps_its_own_loader(tmp_path, monkeypatch):
    import botocore.session

    from atrest.core.clients import shared_loader

    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    own = botocore.session.Session().get_component("data_loader")
    assert own is not shared_loader()
    assert str(tmp_path) in own.search_paths
