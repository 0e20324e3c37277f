"""The NOTIFY wake-up: keeps the LISTEN connection that wakes the claim loop."""

from collections.abc import Callable

from fleetq_server.runtime.background import BackgroundLoop
from fleetq_server.store.ports import Subscription


class WakeupListener(BackgroundLoop):
    """Keeps the LISTEN connection open; on (re)connect, wakes the claimer once to
    cover notifications missed while disconnected."""

    name = "listener"

    def __init__(
        self, subscription: Subscription, interval: float, on_reconnect: Callable[[], None]
    ) -> None:
        super().__init__(interval)
        self._subscription = subscription
        self._on_reconnect = on_reconnect

    async def run_once(self) -> None:
        """Reconnect if needed."""
        if await self._subscription.ensure():
            self._on_reconnect()

    async def stop(self) -> None:
        """Stop the loop and close the LISTEN connection."""
        await super().stop()
        await self._subscription.close()
