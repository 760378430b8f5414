"""Management commands of the lockkit Django app."""
