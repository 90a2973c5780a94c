"""shipping/local_build.py: the Artifacts of BUILD_ON=local and --image: the
commit an image stands for, and the flags refused before any connection.
"""

import pytest

from tasks.errors import Failure
from tasks.shipping.local_build import REVISION_LABEL, artifacts_for, commit_of


def test_the_commit_of_an_image_is_its_revision_label_else_its_id():
    data = {"Id": "sha256:" + "f" * 64, "Config": {"Labels": {
        REVISION_LABEL: "ABCDEF1234"}}}
    assert commit_of(data) == "abcdef1234"
    data["Config"]["Labels"][REVISION_LABEL] = "v1.2 (not a commit)"
    assert commit_of(data) == "f" * 64
    assert commit_of({"Id": "sha256:" + "e" * 64, "Config": {}}) == "e" * 64


@pytest.mark.parametrize("name", ["bad name", "-x", "a" * 300, "x;id", ""])
def test_a_bad_image_name_is_bad_input(name):
    with pytest.raises(Failure) as err:
        artifacts_for(name)
    assert err.value.code == 2 and "--image" in err.value.message


def test_image_with_branch_is_bad_input(monkeypatch):
    with pytest.raises(Failure) as err:
        artifacts_for("shop:1", branch="main")
    assert err.value.code == 2 and "--branch" in err.value.message
