"""Face detection and alignment."""
