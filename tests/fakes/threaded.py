"""A fake service on its own event loop in a thread, for tests that drive a daemon process with
blocking calls: written once for every cloud and hub fake."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar


class Service(Protocol):
    """What a fake must offer: start (answering its base URL) and stop."""

    async def start(self) -> str: ...

    async def stop(self) -> None: ...


ServiceT = TypeVar("ServiceT", bound=Service)


class ThreadedFake(Generic[ServiceT]):
    """`api` served from a thread of its own; `call` runs code on its loop."""

    def __init__(self, api: ServiceT, name: str) -> None:
        self.api = api
        self._name = name
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> str:
        """Start the loop and the service; its base URL."""
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name=self._name)
        self._thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self.api.start(), self._loop).result(10)
        return self.url

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 10.0) -> Any:
        """Run `fn(*args)` on the fake's loop (to change its world safely) and return its
        result; a coroutine function's result is awaited there."""
        async def run() -> Any:
            result = fn(*args)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def run(self, coroutine_fn: Callable[..., Awaitable[Any]], *args: Any,
            timeout: float = 30.0) -> Any:
        """Await `coroutine_fn(*args)` on the fake's loop, with a longer bound."""
        return self.call(coroutine_fn, *args, timeout=timeout)

    def stop(self) -> None:
        """Stop the service and its loop."""
        asyncio.run_coroutine_threadsafe(self.api.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop.close()
