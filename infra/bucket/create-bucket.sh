#!/usr/bin/env bash
# Create (or bring into line) statemap's bucket with the AWS CLI:
#
#   infra/bucket/create-bucket.sh BUCKET [REGION]
#
# Idempotent: an existing bucket of yours keeps its data and gets the settings
# again. The settings are the JSON documents beside this script, in the shape
# `aws s3api put-bucket-...` takes, so they are reviewed and tested as files:
#   public-access-block.json  no public access, by ACL or policy, ever
#   ownership-controls.json   ACLs off: the bucket owner owns every object
#   encryption.json           server-side encryption (SSE-S3) by default
#   lifecycle.json            stores/ (intermediate Zarr stores) expire after
#                             30 days; unfinished multipart uploads are aborted
# Layout the jobs use:
#   s3://BUCKET/stores/<run_id>.zarr            intermediate, expires
#   s3://BUCKET/maps/<region>/<run_id>/         published COGs, STAC, quicklook
# Credentials: the AWS CLI's own (profile, SSO, environment); none are read here.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "usage: $0 BUCKET [REGION]   (REGION defaults to \$AWS_REGION, else eu-central-1)" >&2
    exit 2
fi
bucket=$1
region=${2:-${AWS_REGION:-eu-central-1}}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if aws s3api head-bucket --bucket "$bucket" --region "$region" 2>/dev/null; then
    echo "bucket $bucket exists: applying the settings again"
elif [[ $region == us-east-1 ]]; then
    # us-east-1 refuses a LocationConstraint naming itself.
    aws s3api create-bucket --bucket "$bucket" --region "$region"
else
    aws s3api create-bucket --bucket "$bucket" --region "$region" \
        --create-bucket-configuration "LocationConstraint=$region"
fi

# Public access blocked before anything else can be written.
aws s3api put-public-access-block --bucket "$bucket" --region "$region" \
    --public-access-block-configuration "file://$here/public-access-block.json"
aws s3api put-bucket-ownership-controls --bucket "$bucket" --region "$region" \
    --ownership-controls "file://$here/ownership-controls.json"
aws s3api put-bucket-encryption --bucket "$bucket" --region "$region" \
    --server-side-encryption-configuration "file://$here/encryption.json"
aws s3api put-bucket-lifecycle-configuration --bucket "$bucket" --region "$region" \
    --lifecycle-configuration "file://$here/lifecycle.json"

echo "bucket $bucket ($region): public access blocked, ACLs off, SSE-S3, stores/ expire after 30 days"
