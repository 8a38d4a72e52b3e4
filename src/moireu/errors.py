"""Exceptions shared by all stages."""


class InputError(ValueError):
    """Invalid user input: the message names the value, what was given and what is allowed.

    The CLI turns it into a one-line ``error: ...`` message and exit status 2.
    """


class ConvergenceError(RuntimeError):
    """A self-consistent or iterative procedure did not converge and the caller asked to fail."""
