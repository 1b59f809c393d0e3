"""gunicorn settings for ``make run``; ``benchmarks/serve_load.py`` starts the app with this same file.

One worker process, so that every search in it shares one model and one inference queue (which batches
them); many threads, because a thread waiting on the queue costs next to nothing, whereas a request that finds
no free thread waits in gunicorn's own queue, where neither our limit nor our deadline can answer it with a
503 (and a health check would wait behind it). The serving table in docs/benchmarks.md shows the measurements behind this.
"""
import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '5000')}"
workers = int(os.environ.get("WEB_WORKERS", "1"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "256"))
timeout = 120
