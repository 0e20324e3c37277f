"""What a pod knows about itself, shared by its loops and the API layer."""

import time
from dataclasses import dataclass, field


@dataclass
class PodState:
    """Mutable pod state. Only the event loop's thread touches it, so no locks."""

    base_pod_id: str
    max_capacity: int
    pod_id: str = ""
    # Bumped each time the pod re-registers after being presumed dead.
    incarnation: int = 1
    started_monotonic: float = field(default_factory=time.monotonic)
    is_leader: bool = False
    draining: bool = False
    database_ok: bool = False
    # Set between "the database says we are down" and re-registration: claim nothing.
    fenced: bool = False
    current_capacity: int = 0

    def __post_init__(self) -> None:
        if not self.pod_id:
            self.pod_id = self.base_pod_id

    @property
    def uptime_seconds(self) -> float:
        """Seconds since this process started."""
        return time.monotonic() - self.started_monotonic

    @property
    def healthy(self) -> bool:
        """Serving: the database answers and the pod is not shutting down."""
        return self.database_ok and not self.draining

    @property
    def may_claim(self) -> bool:
        """Whether the claim loop may take new work."""
        return self.database_ok and not self.draining and not self.fenced

    @property
    def acts_as_leader(self) -> bool:
        """Whether the leader's loops (retention, schedules) may act: leading, not
        draining, not between being presumed dead and re-registering."""
        return self.is_leader and not self.draining and not self.fenced

    @property
    def free_capacity(self) -> int:
        """Steps this pod may still start."""
        return max(0, self.max_capacity - self.current_capacity)

    def next_incarnation_id(self) -> str:
        """A fresh pod id for re-registration: the old id stays down, so recovery
        still requeues whatever the old incarnation held."""
        self.incarnation += 1
        return f"{self.base_pod_id}-r{self.incarnation}"
