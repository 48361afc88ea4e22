#!/usr/bin/env bash
# Build the image, tag it and push it to Amazon ECR (default) or to any registry (make push).
#
#   scripts/push_image.sh                                        # ECR; account/region from the AWS CLI
#   AWS_ACCOUNT_ID=123456789012 AWS_REGION=eu-west-1 scripts/push_image.sh
#   ECR_REPOSITORY=fm-wals TAG=1.0 scripts/push_image.sh          # repository created when missing
#   REGISTRY=registry.example.com:5000/team/fm-wals scripts/push_image.sh   # any other registry
#
# Variables: IMAGE (local tag, default fm-wals:latest), TAG (pushed tag, default latest),
# NO_BUILD=1 (push the existing IMAGE as is), ECR_HOST (registry host override: a VPC endpoint, or a
# local registry in tests). Prints the pushed image URI last, ready for Estimator(image_uri=...).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${IMAGE:-fm-wals:latest}"
TAG="${TAG:-latest}"

log() { printf '[push_image] %s\n' "$*" >&2; }
die() { printf '[push_image] ERROR: %s\n' "$*" >&2; exit 1; }

# 1. Build (unless told to push what exists).
if [ "${NO_BUILD:-0}" = 1 ]; then
    docker image inspect "$IMAGE" >/dev/null 2>&1 || die "NO_BUILD=1 but image $IMAGE does not exist"
else
    IMAGE="$IMAGE" "$repo/scripts/build_image.sh"
fi

# 2. Where to push.
if [ -n "${REGISTRY:-}" ]; then
    # host[:port]/name[:tag]: a tag in the last path component wins over $TAG.
    last="${REGISTRY##*/}"
    if [[ "$REGISTRY" == */* && "$last" == *:* ]]; then target="$REGISTRY"; else target="$REGISTRY:$TAG"; fi
else
    command -v aws >/dev/null 2>&1 || die "the AWS CLI is needed for ECR (or set REGISTRY=host:port/name)"
    region="${AWS_REGION:-${AWS_DEFAULT_REGION:-$(aws configure get region 2>/dev/null || true)}}"
    [ -n "$region" ] || die "no AWS region: set AWS_REGION or run 'aws configure'"
    account="${AWS_ACCOUNT_ID:-}"
    if [ -z "$account" ]; then
        account="$(aws sts get-caller-identity --query Account --output text --region "$region")" \
            || die "cannot find the AWS account (aws sts get-caller-identity failed): set AWS_ACCOUNT_ID"
    fi
    repository="${ECR_REPOSITORY:-fm-wals}"
    suffix="amazonaws.com"
    [[ "$region" == cn-* ]] && suffix="amazonaws.com.cn"
    host="${ECR_HOST:-$account.dkr.ecr.$region.$suffix}"

    if ! aws ecr describe-repositories --repository-names "$repository" --region "$region" >/dev/null 2>&1; then
        log "creating ECR repository $repository in $region"
        aws ecr create-repository --repository-name "$repository" --region "$region" >/dev/null \
            || die "aws ecr create-repository $repository failed"
    fi
    log "logging in to $host"
    aws ecr get-login-password --region "$region" \
        | docker login --username AWS --password-stdin "$host" >/dev/null \
        || die "docker login to $host failed"
    target="$host/$repository:$TAG"
fi

# 3. Tag and push.
log "pushing $IMAGE as $target"
docker tag "$IMAGE" "$target"
docker push "$target" >&2
echo "$target"
