"""release --image records the image as what runs; the colour keeps following its branch."""

from tasks.model.state import build_of, empty_state, source_of, with_release


def test_an_image_release_is_not_recorded_as_its_branch():
    state = with_release(empty_state("shop"), "green", branch="main", commit="c" * 40,
                         image="sha256:1", who="ann", live=True, deployed="main",
                         from_image="shop-ci:5")
    record = state["colours"]["green"]
    assert record["branch"] == "main"  # what the next plain release follows
    assert build_of(record)["branch"] is None and build_of(record)["follows"] == "main"
    assert source_of(record) == "image shop-ci:5"
