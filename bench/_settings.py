"""Settings for the servers bench/serving.py starts: the production settings plus one bench-only URL."""

from octopus.settings import *  # noqa: F403

ROOT_URLCONF = "bench._urls"
