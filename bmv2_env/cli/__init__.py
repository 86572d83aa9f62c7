"""p4tas-env, the development environment's command line: arguments, commands, what they print."""
