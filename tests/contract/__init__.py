"""The P4 source and the Python side agree: constants and layouts, and bmv2 vs softnic packet by packet."""
