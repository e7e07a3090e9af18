"""One exception type for errors the user must act on: printed as one line, exit 1."""


class PmlsegError(Exception):
    """A clear, one-line problem with the input (names the file and what is wrong)."""
