#!/usr/bin/env bash
# The hub's two database roles, made once by the postgres image on the first start of an
# empty volume (/docker-entrypoint-initdb.d). hub_owner owns the database and every table
# and is used only by `manage.py migrate`. hub_app, the role of web / worker / beat, may
# read and write rows but owns nothing: it cannot TRUNCATE (which skips row triggers) or
# ALTER the append-only audit table, nor drop its trigger.
set -euo pipefail
: "${POSTGRES_USER:?}" "${POSTGRES_DB:?}"
: "${HUB_DB_OWNER_PASSWORD:?set HUB_DB_OWNER_PASSWORD}" "${HUB_DB_APP_PASSWORD:?set HUB_DB_APP_PASSWORD}"

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v db="$POSTGRES_DB" \
  -v owner_password="$HUB_DB_OWNER_PASSWORD" \
  -v app_password="$HUB_DB_APP_PASSWORD" <<'SQL'
CREATE ROLE hub_owner LOGIN PASSWORD :'owner_password';
CREATE ROLE hub_app LOGIN PASSWORD :'app_password';
ALTER DATABASE :"db" OWNER TO hub_owner;
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO hub_app;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO hub_app;
-- Tables and sequences hub_owner creates from now on (every migration): rows only.
ALTER DEFAULT PRIVILEGES FOR ROLE hub_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO hub_app;
ALTER DEFAULT PRIVILEGES FOR ROLE hub_owner IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO hub_app;
SQL
