"""The `sr3` command line: one module per subcommand."""
