from django.contrib.auth.hashers import Argon2PasswordHasher


class FastArgon2PasswordHasher(Argon2PasswordHasher):
    """Argon2id with minimal cost, for the test suite only (settings.TESTING).

    Same algorithm and code path as production, ~100x cheaper, so fixtures that create
    dozens of users stay fast. Never configured outside tests.
    """

    time_cost = 1
    memory_cost = 64
    parallelism = 1
