"""The one user-facing error type: the CLI prints it on one line and exits non-zero."""


class SR3Error(Exception):
    """A mistake the user can fix (bad path, bad config key, wrong scale), reported without a traceback."""
