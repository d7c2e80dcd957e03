# One image for every process of the Procfile (web, ws, worker, beat, release).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
RUN useradd --create-home --uid 10001 octopus

COPY requirements/base.txt requirements/base.txt
RUN pip install -r requirements/base.txt

COPY . .
# collectstatic needs settings to load; production settings refuse to start without real values,
# so give it throw-away ones that are used for nothing else (no database is contacted).
RUN DEBUG=0 SECRET_KEY="build-only-$(python -c 'import secrets; print(secrets.token_urlsafe(48))')" \
    DATABASE_URL=postgres://build:build-only@localhost/unused REDIS_URL=redis://localhost:6379 \
    python manage.py collectstatic --noinput \
    && chown -R octopus:octopus /app/var

USER octopus
EXPOSE 8000 8001
CMD ["gunicorn", "octopus.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
