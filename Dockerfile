# rprof-agent as a sidecar: `rprof-agent serve` answering Go's /debug/pprof/ endpoints on 6060.
#
#   docker build -t rprof-agent .
#   docker run --rm --pid=container:my-app --cap-drop=ALL --cap-add=SYS_PTRACE --cap-add=PERFMON \
#       -p 127.0.0.1:6060:6060 rprof-agent --process my-server --listen 0.0.0.0:6060
#
# Kubernetes: deploy/kubernetes/sidecar.yaml. Capabilities and what fails without them: the
# "Sidecar (Kubernetes)" section of README.md.

# The toolchain the project is tested with (the workspace's rust-version is the minimum).
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY . .
# The image ships without debug info (profiles of the agent itself are not its purpose).
ENV CARGO_PROFILE_RELEASE_DEBUG=0
# Plain layers (no BuildKit cache mounts), so that any builder builds it.
RUN cargo build --release --locked -p rprof-agent \
 && install -D -m 0755 target/release/rprof-agent /out/rprof-agent

# glibc and libgcc, which the binary links, and nothing else: no shell, no package manager.
FROM gcr.io/distroless/cc-debian12
COPY --from=build /out/rprof-agent /usr/local/bin/rprof-agent
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
