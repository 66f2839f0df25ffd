"""Recording format and replay: the reader/writer of recordings, synthetic recordings from the simulated market,
deterministic backtest replay with its fast path, and the backtest chart. Recording from live venues is the
service loop's job (``arbframe.service.recorder``)."""
