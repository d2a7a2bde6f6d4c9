"""The ``rerf`` command line: click commands that parse arguments, call the library, print.

Entry point: ``cli.main:main`` (console script ``rerf``).
"""
