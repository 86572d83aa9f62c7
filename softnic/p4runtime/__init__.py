"""softnic's P4Runtime server (server.py), built like simple_switch_grpc's PI frontend: one
module per concern (arbitration, pipeline config, writes, reads, packet I/O)."""
