"""Errors the user can fix. The CLI prints them as one line on stderr, exits 1, and shows no traceback."""


class UserError(Exception):
    """A problem the user can fix (bad flag, missing or corrupt file). Its message names the file or option."""


class Interrupted(UserError):
    """SIGINT/SIGTERM during training, after the checkpoint at the current step was written."""

    exit_code = 130
