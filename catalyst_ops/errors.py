"""Exit codes and the exceptions that map onto them.

Exit codes (documented once, in README "Exit codes"):
  0  ok
  1  the check found a problem (unhealthy, no-go, failed step)
  2  usage or configuration error
  3  could not run (a dependency is down or unreachable)
"""

OK = 0
PROBLEM = 1
USAGE = 2
CANNOT_RUN = 3


class OpsError(Exception):
    """An error with a one-line message and an exit code; never shown as a traceback."""

    exit_code = PROBLEM

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(OpsError):
    """Bad configuration: names the file, the key and what was expected."""

    exit_code = USAGE

    def __init__(self, source: str, key: str | None, expected: str):
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {expected}")
        self.source = source
        self.key = key


class CannotRun(OpsError):
    """A dependency (service, database, SMTP server) could not be reached."""

    exit_code = CANNOT_RUN
