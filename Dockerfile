# gcsearch on a GPU host: CUDA-enabled PyTorch, gcsearch with its extras, a non-root user.
#   docker build -t gcsearch .
#   docker run --gpus all -v "$PWD/db:/db" -v "$PWD/data:/data" gcsearch run --study placement
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    GCSEARCH_STORAGE=sqlite:////db/gcsearch.db \
    GCSEARCH_DATA_DIR=/data

WORKDIR /opt/gcsearch
COPY pyproject.toml README.md ./
COPY gcsearch ./gcsearch
COPY studies ./studies
# The same install step as the README's "Docker" section; torch comes from the base image.
RUN pip install '.[plots,postgres,images]'

RUN useradd --create-home --uid 1000 gcsearch \
    && mkdir -p /db /data \
    && chown gcsearch:gcsearch /db /data
USER gcsearch
WORKDIR /db
VOLUME ["/db", "/data"]

ENTRYPOINT ["gcsearch"]
CMD ["--help"]
