"""gunicorn settings from the environment, as label-studio-ml's Dockerfiles pass them.

``PORT`` (9090), ``WORKERS`` (1), ``THREADS`` (8), ``TIMEOUT`` (120 s: Label Studio waits 100 s
for ``/predict``). Workers share nothing but the store, so any count is safe.
"""

import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '9090')}"
workers = int(os.environ.get("WORKERS", "1"))
threads = int(os.environ.get("THREADS", "8"))
worker_class = "gthread"
timeout = int(os.environ.get("TIMEOUT", "120"))
accesslog = "-"
# The access log shows method, path and status only: never headers (basic auth) or bodies.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(L)ss'
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
