"""The trading core: premium math, the strategy, paper execution (wallets, book walking), the engine's tick,
the FX service and trading statistics. Pure logic on the data model; no I/O of its own beyond the drivers."""
