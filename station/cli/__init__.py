"""The `indus` command line."""
