"""The restart policy: whether a failed run is started again, and after how long. Pure: time is
passed in, nothing sleeps here.

- `never`: a failure ends the launch. `always`: every failure of the server is restarted.
  `on-failure`: like `always`, except for failures a restart cannot fix (`NEVER_RETRIED`: the same
  flags, GPU and model would fail the same way, only later and after a minutes-long start).
- Backoff doubles from `backoff_initial` to `backoff_max` (1 s to 60 s), and starts over once a run
  stayed ready for `stable_after` seconds, as Kubernetes' CrashLoopBackOff does.
- At most `limit` restarts within `window` seconds; then the launcher gives up with the last
  failure, so a crash loop ends in an error an operator sees instead of running forever.
A signal, a ready timeout or a hang of the launcher's own making is never retried here: only a
server failure (`StartFailed` and its subclasses) is.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from ..errors import ExitCode, ServeError, StartFailed

Mode = Literal["never", "on-failure", "always"]

# Failures that a restart cannot fix: `on-failure` gives up on them at once.
NEVER_RETRIED: frozenset[ExitCode] = frozenset(
    {
        ExitCode.UNRECOGNIZED_ARGUMENT,
        ExitCode.BF16_UNSUPPORTED,
        ExitCode.KV_CACHE_TOO_SMALL,
        ExitCode.MODEL_NOT_FOUND,
        ExitCode.CPU_ATTENTION_HEAD_SIZE,
    }
)


RESTART_LIMIT = 5  # restarts within the window before the launcher gives up


@dataclass(frozen=True)
class RestartPolicy:
    mode: Mode = "never"
    limit: int = RESTART_LIMIT
    window: float = 600.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    stable_after: float = 60.0  # a run ready this long resets the backoff
    never_retried: frozenset[ExitCode] = NEVER_RETRIED

    def retries(self, failure: ServeError) -> bool:
        """Whether this kind of failure is restarted at all (before counting)."""
        if self.mode == "never" or not isinstance(failure, StartFailed):
            return False
        return self.mode == "always" or failure.exit_code not in self.never_retried


@dataclass(frozen=True)
class Restart:
    delay: float  # seconds to wait before the next start
    count: int  # restarts within the window, this one included


@dataclass
class Restarts:
    """The restart history of one launch, applying a policy to each failure."""

    policy: RestartPolicy
    _times: deque[float] = field(default_factory=deque)
    _consecutive: int = 0

    def after(self, failure: ServeError, now: float, ready_for: float | None) -> Restart | None:
        """The restart for `failure` at `now`, or None when the launch must end with it.

        `ready_for`: how long the failed run had been ready (None: it never was). When the limit
        is reached, the failure's message says so."""
        policy = self.policy
        if not policy.retries(failure):
            return None
        if ready_for is not None and ready_for >= policy.stable_after:
            self._consecutive = 0  # it ran fine for a while: start the backoff over
        while self._times and now - self._times[0] > policy.window:
            self._times.popleft()
        if len(self._times) >= policy.limit:
            failure.message = (
                f"gave up after {len(self._times)} restarts in {policy.window / 60:.0f} min; "
                f"last failure: {failure.message}"
            )
            return None
        delay = min(policy.backoff_initial * 2**self._consecutive, policy.backoff_max)
        self._consecutive += 1
        self._times.append(now)
        return Restart(delay, len(self._times))
