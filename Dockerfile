# The agent as one self-contained binary (agent.md 6.2): compiled by Deno in the build stage, run
# from a distroless glibc image that holds nothing else. The Deno version must stay the one that
# .ci/run pins; tests/deploy/dockerfile_test.ts checks it.

FROM denoland/deno:2.9.6 AS build
WORKDIR /src
# Dependencies first, so that editing the source does not download them again.
COPY deno.json deno.lock ./
RUN deno install --frozen
COPY . .
# --allow-write: the billing spool in the state dir. --allow-sys: the host name and the process
# metrics. --no-code-cache: the binary would otherwise write V8's code cache to a temp dir at
# start, and the DaemonSet's root filesystem is read-only. --v8-flags: the heap sizing measured in
# BENCHMARKS.md (a 400 MiB old space inside the DaemonSet's 600Mi limit, a small young generation,
# and growth of 30 % past the live heap), the same as the start and compile tasks.
RUN deno compile --frozen \
      --v8-flags=--max-old-space-size=400,--max-semi-space-size=4,--heap-growing-percent=20 \
      --allow-net --allow-env --allow-read --allow-write --allow-sys \
      --no-code-cache \
      --output /out/autoscaler-agent main.ts

FROM gcr.io/distroless/cc-debian12:nonroot
# Two glibc malloc arenas instead of one per thread: the same native work in less memory.
ENV MALLOC_ARENA_MAX=2
COPY --from=build /out/autoscaler-agent /usr/bin/autoscaler-agent
USER nonroot
# Global metrics (listen.metricsPort) and per-VM metrics (listen.vmMetricsPort). The state-dump
# server (dumpState.port, 10300) also listens, but is for debugging and stays undeclared, as in
# the DaemonSet.
EXPOSE 9100 9101
ENTRYPOINT ["/usr/bin/autoscaler-agent"]
