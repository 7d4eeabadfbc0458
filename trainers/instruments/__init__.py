"""The instruments that watch forgetting: probe, weight drift, step dumps, continual evaluation."""
