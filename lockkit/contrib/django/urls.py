"""``path("", include("lockkit.contrib.django.urls"))`` serves ``metrics/``."""

from __future__ import annotations

from django.urls import path

from lockkit.contrib.django.views import metrics

urlpatterns = [path("metrics/", metrics, name="lockkit-metrics")]
