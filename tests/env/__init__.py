"""The development environment (bmv2_env): veths, namespaces, targets, processes, system packages."""
