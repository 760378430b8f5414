"""Optional integrations: each module needs its framework installed and imports nothing else of it.

* :mod:`lockkit.contrib.flask` — a Flask extension (error handlers, ``/metrics``);
* :mod:`lockkit.contrib.django` — a Django app (settings, middleware, ``lockkit_status``);
* :mod:`lockkit.contrib.prometheus` — Prometheus metrics for locks, repositories and stores.
"""
