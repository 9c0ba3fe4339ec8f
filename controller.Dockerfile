# syntax=docker/dockerfile:1
# The Nextflow controller image for clusters without egress: nextflow/nextflow with the nf-k8s
# plugin baked in, so that a run downloads nothing (neither Nextflow nor the plugin index on
# raw.githubusercontent.com nor the plugin from GitHub).
#
#   docker build -f controller.Dockerfile -t registry.example.org/you/nextflow-controller:25.04.8 .
#
# Then run the service with
#   NEXTFLOW_IMAGE=registry.example.org/you/nextflow-controller:25.04.8
#   NEXTFLOW_PLUGINS_DIR=/opt/nextflow/plugins
#   NEXTFLOW_OFFLINE=true
#
# The versions go together: Nextflow 25.04.8 asks for nf-k8s 1.0.1 (25.04.7: 1.0.0), and in
# offline mode it only accepts that exact version from NXF_PLUGINS_DIR.
ARG NEXTFLOW_VERSION=25.04.8

FROM nextflow/nextflow:${NEXTFLOW_VERSION}
ARG NF_K8S_VERSION=1.0.1
# The framework stays where the base image put it (/.nextflow/framework, which the Job names
# as NXF_DIST); the plugins go to a directory of their own, readable by the Job's user (1000).
ENV NXF_PLUGINS_DIR=/opt/nextflow/plugins \
    NXF_DISABLE_CHECK_LATEST=true
RUN mkdir -p "$NXF_PLUGINS_DIR" \
    && nextflow plugin install "nf-k8s@${NF_K8S_VERSION}" \
    && test -d "$NXF_PLUGINS_DIR/nf-k8s-${NF_K8S_VERSION}" \
    && chmod -R a+rX "$NXF_PLUGINS_DIR" /.nextflow/framework
