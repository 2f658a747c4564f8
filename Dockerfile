# One image for api, dashboard, migrate and worker. pip installs torch's CUDA build from PyPI.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY alembic ./alembic
COPY objectives ./objectives
COPY service ./service
COPY worker ./worker
COPY cli ./cli
RUN pip install .
# alembic/ lives beside the packages; hpo migrate finds it through alembic.ini in /app.
ENV HPO_DATA_DIR=/data HPO_ARTIFACT_DIR=/artifacts
CMD ["hpo", "serve", "--host", "0.0.0.0"]
