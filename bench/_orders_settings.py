"""Settings for bench/orders.py: the production settings plus bench-only URLs, kept apart from dev and tests.

The database is a bench-only one (bench/orders.py points DATABASE_URL at ``octopus_bench_orders``);
Redis is the machine's, so the keys the order path touches there are moved aside: the cache prefix
(quotes, throttle counters), the channel-layer prefix (order events published to firm groups) and the
Celery queue (so a dev worker on the same broker never takes the bench's ``orders.route`` tasks).
"""

from bench._settings import *  # noqa: F403

ROOT_URLCONF = "bench._orders_urls"
CACHES["default"]["KEY_PREFIX"] = "octopus-bench-orders"  # noqa: F405
CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = "octopus-bench-orders:"  # noqa: F405
CELERY_TASK_DEFAULT_QUEUE = "bench-orders"
