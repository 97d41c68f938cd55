"""The engine: applies the planner's decisions to locks through drivers, one worker per lock.

Every state change and the events it causes are committed in one store transaction before the
in-memory view changes; a command's intent is recorded before it is sent. The parts, and which
owns what, are described in docs/architecture.md.
"""

from bridge.engine.errors import EngineError, ErrorKind
from bridge.engine.facade import Engine
from bridge.engine.requests import CodeRequest, Receipt
from bridge.engine.state import EventListener
from bridge.engine.worker import STORE_RETRY_S

__all__ = ["STORE_RETRY_S", "CodeRequest", "Engine", "EngineError", "ErrorKind", "EventListener",
           "Receipt"]
