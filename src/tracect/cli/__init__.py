"""The ``tracect`` command line: thin wrappers that parse options and call the Python API."""
