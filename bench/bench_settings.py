"""Settings of bench/load.py: the production settings, plus the bare reference view's route.

Nothing else changes: same middleware, logging, cache, database options as production.
"""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.bench_urls"
