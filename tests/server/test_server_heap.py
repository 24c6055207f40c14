"""The serving process keeps its start-up heap out of full collections (``server.heap``)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
from _server_support import DEMO_POLICY

from extauthz.server import heap
from extauthz.server.app import build_state
from extauthz.server.config import ServerConfig


class Node:
    """A reference cycle: only the cyclic collector can free it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    heap.disable()
    yield
    heap.disable()


def cycle() -> weakref.ref[Node]:
    return weakref.ref(Node())


def test_freeze_moves_live_objects_out_of_collections() -> None:
    kept = Node()
    heap.freeze()
    assert gc.get_freeze_count() > 0
    assert any(o is kept for o in gc.get_objects()) is False  # frozen: not tracked by any gen
    later = cycle()
    gc.collect()
    assert later() is None  # garbage made after the freeze is still collected
    heap.disable()
    assert gc.get_freeze_count() == 0
    assert any(o is kept for o in gc.get_objects())


def test_a_reload_collects_what_came_after_the_freeze_and_never_walks_the_frozen_heap() -> None:
    heap.freeze()
    frozen = gc.get_freeze_count()
    node = Node()
    later = weakref.ref(node)
    gc.disable()  # no automatic collection: only after_reload's may free it
    try:
        del node
        assert later() is not None
        heap.after_reload()
        assert later() is None  # made after the freeze: collected
        # nothing went back to the generations: the frozen heap was not walked
        assert gc.get_freeze_count() >= frozen
    finally:
        gc.enable()


def test_a_dropped_policy_is_freed_without_any_collection() -> None:
    """Generated validators are reference cycles; they break theirs when dropped."""
    from extauthz.policy import load_policy

    policy = load_policy(DEMO_POLICY)
    heap.freeze()  # the policy is frozen, as in a serving process
    validators = [weakref.ref(r.contract.validate) for r in policy.routes if r.contract is not None]
    generated = [weakref.ref(v()._made_from) for v in validators]  # type: ignore[union-attr]
    assert validators and all(g() is not None for g in generated)
    gc.disable()
    try:
        del policy
        assert all(v() is None for v in validators)
        assert all(g() is None for g in generated)  # the generated functions too
    finally:
        gc.enable()


def test_after_reload_does_nothing_unless_the_process_froze() -> None:
    heap.after_reload()
    assert gc.get_freeze_count() == 0


def test_policy_reload_refreezes_the_serving_heap_without_unfreezing_it() -> None:
    state = build_state(ServerConfig(policy_path=str(DEMO_POLICY), hot_reload=False))
    try:
        node = Node()
        old = weakref.ref(node)
        heap.freeze()
        del node
        assert state.reload is not None
        state.reload()
        assert old() is not None  # frozen garbage stays: the reload does not walk that heap
        assert gc.get_freeze_count() > 0
    finally:
        for hook in state.on_shutdown:
            hook()
