"""p4tas's v1model pipeline (p4src/v1model/) in Python, one module per P4 file with the same
control names, so the two read side by side. p4tas.py wires them like p4tas.p4."""
