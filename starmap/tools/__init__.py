"""The command-line tools behind ``starmap``'s subcommands: import, export, progress."""
