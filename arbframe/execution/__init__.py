"""The execution layer: turns the engine's decisions into orders and owns every order until it is final.

- :mod:`arbframe.execution.base`: the :class:`~arbframe.execution.base.Executor` interface the engine calls
  (paper fills are one implementation, :class:`arbframe.trading.paper.PaperExecutor`; live venues another).
- :mod:`arbframe.execution.orders`: the order state machine and client order ids.
- :mod:`arbframe.execution.live`: :class:`~arbframe.execution.live.LiveExecutor`, hedged two-leg IOC orders on
  real venues (through the kernel's ``Trading`` interface), leg-risk handling, residual exposure.
- :mod:`arbframe.execution.risk`: risk limits, consecutive failures, residual exposure and their gauges.
- :mod:`arbframe.execution.control`: the kill switch, kept in storage so it works across hosts and restarts.
- :mod:`arbframe.execution.reconcile`: start-up and periodic reconciliation with the venues.
"""
