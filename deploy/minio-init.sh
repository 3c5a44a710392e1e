#!/bin/sh
# One-shot, safe to re-run: the hub's bucket (versioned, never public) and the hub's own
# MinIO user, allowed into that bucket only. Runs in the minio/mc image (POSIX sh + mc).
set -eu
: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}" "${S3_BUCKET:?}"
: "${S3_ACCESS_KEY:?}" "${S3_SECRET_KEY:?}"

mc alias set hub http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing "hub/$S3_BUCKET"
# Versioning keeps overwritten and deleted objects recoverable, and is what bucket
# replication to a second site needs (docs/operations.md).
mc version enable "hub/$S3_BUCKET"
mc anonymous set none "hub/$S3_BUCKET"

cat > /tmp/hub-bucket-policy.json <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
      "Resource": ["arn:aws:s3:::$S3_BUCKET"]
    },
    {
      "Effect": "Allow",
      "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                 "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
      "Resource": ["arn:aws:s3:::$S3_BUCKET/*"]
    }
  ]
}
JSON
mc admin policy create hub hub-bucket-rw /tmp/hub-bucket-policy.json
mc admin user add hub "$S3_ACCESS_KEY" "$S3_SECRET_KEY"
# Detach first (fails harmlessly when not attached) so that attaching always succeeds.
mc admin policy detach hub hub-bucket-rw --user "$S3_ACCESS_KEY" >/dev/null 2>&1 || true
mc admin policy attach hub hub-bucket-rw --user "$S3_ACCESS_KEY"
echo "bucket $S3_BUCKET ready for user $S3_ACCESS_KEY"
