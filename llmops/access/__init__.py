"""Who may call the service and how often: API keys (stored as HMAC digests, verified from a
short-lived cache), their scopes, and per-key rate limits in process or across replicas."""
