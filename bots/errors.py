"""Errors the CLI reports as one sentence on stderr, never as a traceback."""


class StartupError(Exception):
    """The app cannot start; the message says why in one sentence."""
