"""The one exception type lmforge raises for bad input; the command line prints it as one line."""


class LmforgeError(Exception):
    """A problem the user can fix (a missing file, a wrong value...): the message says what to fix."""


def one_line(err: BaseException) -> str:
    """The most useful single line of an exception message (the last non-empty one: transformers and
    huggingface_hub put the reason last, e.g. under a "Validation error for field ..." heading)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


__all__ = ["LmforgeError", "one_line"]
