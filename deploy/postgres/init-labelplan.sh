#!/bin/sh
# Runs once, when the PostgreSQL volume is first created: labelplan's store gets its own database
# beside Label Studio's, owned by the same user.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -c "CREATE DATABASE \"${LABELPLAN_DB_NAME:-labelplan}\" OWNER \"$POSTGRES_USER\";"
