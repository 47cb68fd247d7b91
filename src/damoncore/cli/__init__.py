"""damo-compatible command line: one module per subcommand."""
