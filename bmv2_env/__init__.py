"""Bring up the development environment: veths, the switch of the selected target (TARGET=bmv2:
simple_switch_grpc, TARGET=soft: softnic; targets.py), the pipeline, the PTF suite.

Run `python -m bmv2_env --help` (or `p4tas-env --help`); the port model is in bmv2_env/README.md.
"""
