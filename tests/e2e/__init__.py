"""End-to-end tests: the whole stack on a target against Linux peers in namespaces."""
