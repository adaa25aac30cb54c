# One image for the three production processes (web, worker, beat): see docker-compose.yml and
# docs/operations.md. Secrets come from the environment at run time, never from the image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# Static files for the admin, collected at build time (DEBUG only lets settings load without
# production secrets; the running container gets its own environment).
RUN DEBUG=true python manage.py collectstatic --noinput >/dev/null \
    && useradd --system --uid 10001 --home /app app \
    && mkdir -p /var/run/prometheus /var/lib/celery \
    && chown app /var/run/prometheus /var/lib/celery

USER app
EXPOSE 8000
CMD ["gunicorn", "-c", "python:ops.gunicorn", "config.wsgi:application"]
