"""release --image records the image as what runs; the colour keeps following its branch."""

from tasks.model.pending import with_pending, with_promoted
from tasks.model.state import build_of, empty_state, source_of, with_release


def test_an_image_release_is_not_recorded_as_its_branch():
    state = with_release(empty_state("shop"), "green", branch="main", commit="c" * 40,
                         image="sha256:1", who="ann", live=True, deployed="main",
                         from_image="shop-ci:5")
    record = state["colours"]["green"]
    assert record["branch"] == "main"  # what the next plain release follows
    assert build_of(record)["branch"] is None and build_of(record)["follows"] == "main"
    assert source_of(record) == "image shop-ci:5"


def test_a_staged_or_canary_image_release_records_as_the_plain_one_does():
    """--no-switch and --canary with --image: no branch was checked out, so the
    build names the image (not the colour's followed branch), before and after
    its promote; the colour keeps following its branch."""
    base = with_release(empty_state("shop"), "blue", branch="main", commit="a" * 40,
                        image="sha256:0", who="ann", live=True)
    plain = with_release(base, "green", branch="main", commit="c" * 40, image="sha256:1",
                         who="ann", live=True, deployed="main", from_image="shop-ci:5")
    for pending in ("staged", "canary"):
        state = with_pending(base, "green", pending, branch="main", commit="c" * 40,
                             image="sha256:1", who="ann", deployed="main",
                             from_image="shop-ci:5", percent=20 if pending == "canary" else None)
        record = state["colours"]["green"]
        assert record["pending"] == pending
        assert build_of(record)["branch"] is None and source_of(record) == "image shop-ci:5"
        promoted = with_promoted(state, "green")["colours"]["green"]
        assert promoted["branch"] == "main" and "pending" not in promoted
        assert build_of(promoted) == build_of(plain["colours"]["green"])
        assert source_of(promoted) == source_of(plain["colours"]["green"])
