-- The app's logins and database, run by 20-postgresql (docs/ARCHITECTURE.md, decision 11).
SET log_min_duration_statement = -1;
SET log_statement = 'none';
\getenv owner_password DB_PASSWORD
\getenv web_password DB_WEB_PASSWORD
\getenv worker_password DB_WORKER_PASSWORD
SELECT format('CREATE ROLE %I LOGIN', r) FROM unnest(ARRAY[:'owner', :'web', :'worker']) AS r
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \gexec
ALTER ROLE :"owner" WITH LOGIN PASSWORD :'owner_password';
-- BYPASSRLS: graphile-worker's tables have row-level security on and no policy (only their owner sees rows).
ALTER ROLE :"web" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE BYPASSRLS PASSWORD :'web_password';
ALTER ROLE :"worker" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE BYPASSRLS PASSWORD :'worker_password';
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
  WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO :"web", :"worker";
\connect :"db"
SET log_min_duration_statement = -1;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SELECT format('GRANT USAGE ON SCHEMA %I TO %I, %I', n, :'web', :'worker'),
       format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO %I, %I', n, :'web', :'worker'),
       format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO %I, %I', n, :'web', :'worker')
  FROM (SELECT nspname FROM pg_namespace WHERE nspname = 'public' OR nspowner = :'owner'::regrole::oid) AS s(n) \gexec
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" GRANT USAGE ON SCHEMAS TO :"web", :"worker";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"web", :"worker";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" GRANT USAGE, SELECT ON SEQUENCES TO :"web", :"worker";
