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


def test_a_reload_frees_the_cycles_the_old_heap_left() -> None:
    node = Node()
    old = weakref.ref(node)
    heap.freeze()
    del node
    gc.collect()
    assert old() is not None  # frozen garbage stays until a re-freeze
    heap.after_reload()
    assert old() is None
    assert gc.get_freeze_count() > 0


def test_after_reload_does_nothing_unless_the_process_froze() -> None:
    heap.after_reload()
    assert gc.get_freeze_count() == 0


def test_policy_reload_refreezes_the_serving_heap() -> None:
    state = build_state(ServerConfig(policy_path=str(DEMO_POLICY), hot_reload=False))
    try:
        node = Node()
        old = weakref.ref(node)
        heap.freeze()
        del node
        assert state.reload is not None
        state.reload()
        assert old() is None  # the reload hook collected and re-froze
        assert gc.get_freeze_count() > 0
    finally:
        for hook in state.on_shutdown:
            hook()
