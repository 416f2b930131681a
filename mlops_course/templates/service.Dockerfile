# The bike-demand prediction service: GET /health, POST /predict, POST /reload, GET /metrics.
#   docker build -t bike-demand-service:1 .
#   docker run --rm -p 127.0.0.1:<<port>>:<<port>> -e MLFLOW_TRACKING_URI=http://mlflow:5000 bike-demand-service:1
<<base>>
# The course package itself, without its dependencies: the layer above installed them.
COPY <<wheel>> .
RUN pip install --no-cache-dir --no-deps <<wheel>> \
    && useradd --create-home --uid 10001 app && mkdir /srv/logs && chown 10001 /srv/logs
# A numeric user: Kubernetes' runAsNonRoot can only verify a number.
USER 10001

EXPOSE <<port>>
HEALTHCHECK --interval=30s --timeout=3s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:<<port>>/health')"]
# Inside a container the server listens on all interfaces so the port mapping can reach it.
ENTRYPOINT ["python", "-m", "mlops_course.serving", "--host", "0.0.0.0", "--port", "<<port>>", \
            "--request-log", "/srv/logs/requests.jsonl"]
# Arguments that a Kubernetes `args:` may replace.
CMD ["--alias", "champion"]
