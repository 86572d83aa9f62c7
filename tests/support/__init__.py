"""Shared test helpers: the stack (stack.py), end-to-end helpers, fakes, traffic, the report."""
