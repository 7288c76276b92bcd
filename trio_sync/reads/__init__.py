"""Room reads on request: history, events, members."""
