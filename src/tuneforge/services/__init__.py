"""Use-case functions: the only thing the CLI and the API call."""
