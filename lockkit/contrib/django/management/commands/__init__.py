"""``lockkit_status``."""
