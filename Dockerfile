# lnchaos in one image: the suite (Locust master or worker) and the target (`lnchaos target`).
#
# NOT built or run by the test suite: there is no container runtime where lnchaos is developed
# and tested, so nothing claims this file was tested. See docs/distributed.md.
#
#   docker build -t registry.example.com/lnchaos:0.1.0 .
#   docker run --rm registry.example.com/lnchaos:0.1.0 lnchaos --help
#
# The suite's locustfile in the image: /opt/lnchaos/locustfiles/lnchaos_suite.py (its imports
# resolve to the installed package). Locust comes in as a dependency of lnchaos, in the version
# pyproject.toml allows.
FROM python:3.12-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LNCHAOS_SUITE=/opt/lnchaos/locustfiles/lnchaos_suite.py

WORKDIR /opt/lnchaos
COPY pyproject.toml README.md ./
COPY target ./target
COPY locustfiles ./locustfiles
COPY lnchaos ./lnchaos
RUN pip install . \
    && useradd --create-home --uid 10001 lnchaos

# Each process runs from a folder of its own; the suite shares no files between master and
# workers (options, phases, tallies and the verdict travel over Locust's messages).
USER 10001
WORKDIR /home/lnchaos

# 8080: `lnchaos target`; 8089: Locust's web UI; 5557: the master's port for its workers.
EXPOSE 8080 8089 5557
CMD ["lnchaos", "--help"]
