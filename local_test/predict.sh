#!/usr/bin/env bash
# POST a request file to a running server's /invocations and print the response body.
#
#   local_test/predict.sh FILE CONTENT_TYPE [ACCEPT]
#   local_test/predict.sh local_test/requests/digits.json application/json
#   local_test/predict.sh local_test/requests/digits.pbr application/x-recordio-protobuf application/json
#   PORT=8081 local_test/predict.sh local_test/requests/digits.jsonl application/jsonlines application/jsonlines
set -euo pipefail

file="${1:?usage: predict.sh FILE CONTENT_TYPE [ACCEPT]}"
content_type="${2:?usage: predict.sh FILE CONTENT_TYPE [ACCEPT]}"
accept="${3:-application/json}"
url="${URL:-http://localhost:${PORT:-8080}/invocations}"

[ -f "$file" ] || { echo "no such file: $file" >&2; exit 2; }
curl -sS --fail-with-body -X POST \
    -H "Content-Type: $content_type" -H "Accept: $accept" \
    --data-binary @"$file" "$url"
if [ -t 1 ]; then echo; fi  # end the line on a terminal; keep binary bodies intact in a pipe
