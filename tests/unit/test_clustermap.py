"""The cluster map (issue 12): owners, moving names and roles, against golden vectors.

The vectors pin ``jump_hash(xxh3_64(name))``: a change of hash would misroute every stored name
of every existing cluster, so it must fail here first."""

from __future__ import annotations

import pytest

from common.clustermap import ClusterMap
from common.ring import shard_for

#: name → owner for 1..5 shards (computed once with the shipped hash; never regenerate them).
GOLDEN = {
    "library/alpine": [0, 1, 1, 1, 1],
    "team-a/app": [0, 0, 0, 3, 4],
    "user7": [0, 0, 0, 0, 0],
    "ci/build-42": [0, 1, 2, 2, 4],
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_owners(name: str) -> None:
    assert [shard_for(name, n) for n in range(1, 6)] == GOLDEN[name]
    for n in range(1, 6):
        assert ClusterMap.stable(3, n).owner(name) == GOLDEN[name][n - 1]


def test_transition_routes_to_the_source_and_knows_the_target() -> None:
    grow = ClusterMap.stable(1, 3).after(4)
    assert (grow.epoch, grow.phase, grow.source_count, grow.shards, grow.width) == (2, "transition", 3, 4, 4)
    assert grow.owner("team-a/app") == 0 and grow.target("team-a/app") == 3 and grow.is_moving("team-a/app")
    assert not grow.is_moving("library/alpine") and grow.owner("library/alpine") == 1
    assert [grow.role(i) for i in range(4)] == ["source", "source", "source", "target"]
    shrink = ClusterMap.stable(5, 4).after(3)
    assert [shrink.role(i) for i in range(4)] == ["target", "target", "target", "source"]
    assert shrink.is_moving("team-a/app") and shrink.target("team-a/app") == 0
    done = grow.finished()
    assert (done.epoch, done.phase, done.shards, done.width) == (3, "stable", 4, 4)
    assert done.role(3) == "stable" and ClusterMap.stable(7, 3).role(3) == "retired"
    back = grow.rolled_back()
    assert (back.epoch, back.phase, back.shards) == (3, "stable", 3)


def test_moving_names_are_about_one_in_n_plus_one_all_to_the_new_shard() -> None:
    names = [f"repo/{i}" for i in range(4000)]
    for n in (1, 2, 3, 7):
        view = ClusterMap.stable(1, n).after(n + 1)
        moving = [x for x in names if view.is_moving(x)]
        assert abs(len(moving) / len(names) - 1 / (n + 1)) < 0.03
        assert {view.target(x) for x in moving} == {n}


def test_wire_form_and_old_records() -> None:
    view = ClusterMap(4, 3, 2, seed=9)
    assert ClusterMap.from_wire(view.to_wire()) == view
    assert view.to_wire()["phase"] == "transition" and view.to_wire()["from"] == 2
    # a shard's record written before resharding existed: {index, shards, created}
    assert ClusterMap.from_wire({"index": 1, "shards": 2, "created": 1.0}) == ClusterMap.stable(1, 2)
