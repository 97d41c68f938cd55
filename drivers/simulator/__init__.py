"""An in-memory lock family with fault injection: the demo's locks and the main test double."""

from drivers.simulator.driver import SimulatorDriver
from drivers.simulator.lock import SimLock, SimLockSpec

__all__ = ["SimLock", "SimLockSpec", "SimulatorDriver"]
