from policyworld import world  # noqa: F401  (re-exported fixture)
