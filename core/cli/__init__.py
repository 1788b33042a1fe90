"""The command line `python -m core` (DESIGN.md §7): thin shells over the library."""
