"""Local stand-ins speaking real wire protocols (Slack, Anthropic, Kubernetes, AWS, Loki)."""
