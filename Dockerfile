# rprof-agent as a sidecar: `rprof-agent serve` answering Go's /debug/pprof/ endpoints on 6060.
#
#   docker build -t rprof-agent .
#   docker run -d --name rprof --pid=container:my-app --cap-drop ALL --cap-add SYS_PTRACE \
#       --cap-add PERFMON --read-only -p 127.0.0.1:6060:6060 \
#       rprof-agent --process my-server --listen 0.0.0.0:6060
#
# Kubernetes: deploy/kubernetes/sidecar.yaml. Capabilities, what fails without them, and which
# `docker run` flag is which manifest field: the "Deploy" section of README.md.
#
# Stages, in the order the legacy builder (no BuildKit) builds them: it builds every stage before
# the one asked for, so the stages a plain `docker build .` does not need come first and cost it
# nothing but an empty copy.
#
#   runtime      the base image, configured to run the agent (no binary yet)
#   prebuilt     runtime + a binary built outside Docker, taken from the image PREBUILT_FROM
#                names (its /out/ holds `rprof-agent`): `docker build --target prebuilt ...`
#   build        cargo build in RUST_IMAGE
#   (last)       runtime + the binary of `build`: what `docker build .` makes
#
# Without a registry, point BASE_IMAGE (and RUST_IMAGE) at local images: the integration tests
# (integration/tests/container.rs) import a base holding only the libraries the binary links.

# The toolchain the project is tested with (the workspace's rust-version is the minimum).
ARG RUST_VERSION=1.95
ARG RUST_IMAGE=rust:${RUST_VERSION}-slim-bookworm
# glibc and libgcc, which the binary links, and nothing else: no shell, no package manager.
ARG BASE_IMAGE=gcr.io/distroless/cc-debian12
ARG PREBUILT_FROM=no-prebuilt

FROM ${BASE_IMAGE} AS runtime
# Root, deliberately. The agent needs CAP_SYS_PTRACE and CAP_PERFMON to read another user's
# process. Capabilities a container runtime or Kubernetes adds reach UID 0 only (Kubernetes has
# no ambient capabilities); a non-root user would need file capabilities on the binary, which
# only take effect with privilege escalation allowed (no_new_privs blocks them). So: UID 0 with
# every other capability dropped, no privilege escalation and a read-only root filesystem, as
# deploy/kubernetes/sidecar.yaml sets it up. Root without CAP_DAC_OVERRIDE reads only the
# target's files that any user may read.
USER 0:0
EXPOSE 6060
ENTRYPOINT ["rprof-agent", "serve"]

# The default PREBUILT_FROM: an empty /out/, so that `prebuilt` copies nothing.
FROM scratch AS no-prebuilt
WORKDIR /out
FROM ${PREBUILT_FROM} AS prebuilt-binary
FROM runtime AS prebuilt
COPY --from=prebuilt-binary /out/ /usr/local/bin/

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# The image ships without debug info (profiles of the agent itself are not its purpose).
ENV CARGO_PROFILE_RELEASE_DEBUG=0
# clang and libbpf's headers compile the agent's BPF programs (agent/build.rs).
RUN apt-get update && apt-get install -y --no-install-recommends clang libbpf-dev \
 && rm -rf /var/lib/apt/lists/*
# Plain layers (no BuildKit cache mounts), so that any builder builds it.
RUN cargo build --release --locked -p rprof-agent \
 && install -D -m 0755 target/release/rprof-agent /out/rprof-agent

FROM runtime
COPY --from=build /out/rprof-agent /usr/local/bin/rprof-agent
