FROM python:<<python>>-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
WORKDIR /srv

# Dependencies first: this layer is rebuilt only when <<requirements>> changes.
COPY <<requirements>> .
RUN pip install --no-cache-dir -r <<requirements>>
