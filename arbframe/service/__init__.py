"""The running service: the tick loop behind ``arbframe run``, the recorder behind ``arbframe record``, the health
report, and the metrics/health HTTP endpoint."""
