"""Bring up the bmv2 development target: veths, simple_switch_grpc, the pipeline, the PTF suite.

Run `python -m bmv2_env --help` (or `p4tas-env --help`); the port model is in bmv2_env/README.md.
"""
