"""The user-facing error type: the CLI prints it on one line and exits non-zero (the server answers 4xx)."""


class SR3Error(Exception):
    """A mistake the user can fix (bad path, bad config key, wrong scale), reported without a traceback."""


class ImageTooLarge(SR3Error):
    """An image with more pixels than the caller accepts (or than PIL's decompression-bomb guard allows)."""
