"""The `perfmark` command line: each command parses, calls one service, renders."""
