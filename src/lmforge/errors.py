"""The one exception type lmforge raises for bad input; the command line prints it as one line."""


class LmforgeError(Exception):
    """A problem the user can fix (a missing file, a wrong value...): the message says what to fix."""
