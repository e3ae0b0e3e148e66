"""gunicorn settings for the engage redirector.

    gunicorn -c /etc/engage/gunicorn.conf.py 'engage.web.app:create_app()'

The app reads /etc/engage/engage.conf and ENGAGE_* itself; this file only sizes gunicorn.
Worker class chosen by tests/bench/bench_redirector.py on 2 cores: gthread, one process
per core, 16 threads each (8 did as well), beat sync (4 or 8 workers) and gthread with
4 threads or 4 processes: a click waits on a Redis round trip (and its thread appends the
event after the answer, a second one), and threads overlap that wait cheaply (sync
workers also drop keep-alive connections). README: Benchmarks, Clicks.
Every setting can be overridden on the command line or in GUNICORN_CMD_ARGS.
"""
import multiprocessing
import os

bind = os.environ.get("ENGAGE_WEB_BIND", "127.0.0.1:8080")
worker_class = "gthread"
workers = int(os.environ.get("ENGAGE_WEB_WORKERS", multiprocessing.cpu_count()))
threads = int(os.environ.get("ENGAGE_WEB_THREADS", 16))
keepalive = 5  # nginx keeps upstream connections open (keepalive in the upstream block)
timeout = 30
graceful_timeout = 10
accesslog = None  # engage.access writes one structured line per request
errorlog = "-"
proc_name = "engage-redirector"
