"""Shared base test and helpers of the p4tas PTF suite."""
