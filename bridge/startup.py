"""What stops the daemon at start: a box around it that a restart cannot fix, said in one line.

Every known condition (an unusable state directory, PIN key or database, a database newer than
this build) is raised as `StartupError(what, fix)` where it is found, and the command line
catches it once: it prints `lockbridge: <what>: <fix>` and exits with `EXIT_STARTUP`, which the
systemd unit lists in `RestartPreventExitStatus=` so the box does not restart into the same wall
every 10 s.
"""

from __future__ import annotations

# sysexits.h's EX_CONFIG: "something was found in an unconfigured or misconfigured state".
EXIT_STARTUP = 78


class StartupError(Exception):
    """The daemon cannot start on this box as it is: what is wrong, and what to do about it."""

    def __init__(self, what: str, fix: str) -> None:
        super().__init__(f"{what}: {fix}")
        self.what = what
        self.fix = fix

    def line(self) -> str:
        """The one line the operator reads in the journal."""
        return f"lockbridge: {self.what}: {self.fix}"


def startup_errors(exc: BaseException) -> list[StartupError]:
    """The StartupErrors `exc` is made of (a TaskGroup wraps them in a group), or [] when any
    part of it is something else, which then deserves its traceback."""
    if isinstance(exc, StartupError):
        return [exc]
    if isinstance(exc, BaseExceptionGroup):
        found = [startup_errors(e) for e in exc.exceptions]
        if all(found):
            return [error for errors in found for error in errors]
    return []
