import pytest

from atrest.catalog.scopes import BranchKeyScope, ScopeKind
from atrest.core.errors import AtrestError


def test_branch_key_ids_name_their_scope():
    assert BranchKeyScope.account("111122223333").branch_key_id == "account/111122223333"
    assert BranchKeyScope.instance("f75946c0-bc38-4252-8174-468f6ac2543d").branch_key_id.startswith("instance/")


def test_parse_is_the_inverse_of_branch_key_id():
    scope = BranchKeyScope.parse("instance/abc-123")
    assert scope.kind is ScopeKind.INSTANCE and scope.identifier == "abc-123"


@pytest.mark.parametrize("text", ["tenant/1", "account/", "account/a b", "account/../x"])
def test_malformed_scopes_are_refused_with_the_accepted_forms(text):
    with pytest.raises(AtrestError):
        BranchKeyScope.parse(text)
