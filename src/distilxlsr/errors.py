"""The one exception type for mistakes a user can fix."""


class UserError(Exception):
    """A problem the user caused and can fix: the CLI prints the message alone, no traceback.

    The message is one sentence that names the file or value and says what to do.
    """


class RunStopped(KeyboardInterrupt):
    """A training run stopped by SIGINT or SIGTERM before its last step, after writing a
    checkpoint (running the same command resumes it). A `KeyboardInterrupt`, so that
    `except Exception` does not swallow a stop request; the command line exits with
    `exit_code` (128 + the signal's number: 130 for SIGINT, 143 for SIGTERM), so that
    `distill && export` does not go on and a batch scheduler does not record success."""

    def __init__(self, signum: int, step: int):
        self.signum = int(signum)
        self.step = step
        super().__init__(f"stopped by signal {self.signum} at step {step}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
