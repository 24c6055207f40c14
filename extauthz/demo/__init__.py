"""``extauthz demo``: the real stack (PDP, Envoy, Redis, a demo API) and a scripted tour."""
