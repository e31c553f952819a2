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
