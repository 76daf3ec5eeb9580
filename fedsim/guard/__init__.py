"""Resource guard: wall-clock deadline and RAM today; NVML GPU memory plugs in as another :class:`Guard`."""

from fedsim.guard.base import Guard, Usage, Violation, Watch
from fedsim.guard.deadline import DeadlineGuard
from fedsim.guard.ram import RamGuard
from fedsim.guard.supervisor import Outcome, supervise

__all__ = ["DeadlineGuard", "Guard", "Outcome", "RamGuard", "Usage", "Violation", "Watch", "supervise"]
