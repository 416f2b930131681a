# Serves <<title>> with MLflow's scoring server: GET /ping, POST /invocations.
#   docker build -t bike-demand .
#   docker run --rm -p 127.0.0.1:<<port>>:<<port>> bike-demand
<<base>>
COPY <<model_dir>>/ /srv/<<model_dir>>/
RUN useradd --create-home --uid 10001 app
# A numeric user: Kubernetes' runAsNonRoot can only verify a number.
USER 10001

EXPOSE <<port>>
HEALTHCHECK --interval=30s --timeout=3s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:<<port>>/ping')"]
# Inside the container the server must listen on all interfaces so `docker run -p` can reach it.
CMD ["mlflow", "models", "serve", "-m", "/srv/<<model_dir>>", "--env-manager", "local", \
     "--host", "0.0.0.0", "--port", "<<port>>", "--workers", "1"]
