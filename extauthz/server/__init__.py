"""The PDP server: gRPC ext_authz (Unix socket and/or TCP), HTTP API, probes and metrics.

``app`` runs it (``build_state``, ``Server``, ``serve``); ``config`` declares its settings;
``listeners`` are its addresses; ``state`` is what a check shares; ``workers`` supervises
worker processes. The package itself imports nothing, so a light submodule (``worker_plan``'s
socket names for ``envoy-config``, ``socket`` for the devstack) does not load the engine.
"""
