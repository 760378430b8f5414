"""The ``lockkit demo``: a threaded WSGI app under gunicorn that loses no update."""
