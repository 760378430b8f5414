"""The Django app configuration of lockkit."""

from __future__ import annotations

from django.apps import AppConfig


class LockkitConfig(AppConfig):
    """``lockkit.contrib.django``: checks the ``LOCKKIT`` setting when Django starts."""

    name = "lockkit.contrib.django"
    label = "lockkit"
    verbose_name = "lockkit"

    def ready(self) -> None:
        """Check ``settings.LOCKKIT`` at start-up, so a typo fails the deploy, not a request."""
        from lockkit.contrib.django import settings

        settings()
