"""softnic: a software fast-path target that runs p4tas's pipeline (p4src/) and serves
P4Runtime, for machines without bmv2 (the embedded default; bmv2 stays the reference)."""
