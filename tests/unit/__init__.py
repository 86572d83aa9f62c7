"""Unit tests: one module (or a few) at a time, with fakes where a part is remote."""
