"""What an operator watches: Prometheus metrics, the health check, logs (one module each)."""
