"""``extauthz demo``: the real stack (PDP, Envoy, Redis, a demo API) and a scripted tour.

``run.run_demo`` is the entry point; ``stack.DemoStack`` starts and stops the processes;
``tour`` holds the scripted requests and the table; ``tokens`` signs demo JWTs and webhooks.
"""
