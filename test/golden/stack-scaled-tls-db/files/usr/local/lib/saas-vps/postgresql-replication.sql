-- The replication login and one physical slot per read replica, run by 21-postgresql-replication
-- on the primary after the app's logins (docs/ARCHITECTURE.md, "Read replicas").
SET log_min_duration_statement = -1;
SET log_statement = 'none';
\getenv replication_password DB_REPLICATION_PASSWORD
SELECT format('CREATE ROLE %I', :'replicator')
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'replicator') \gexec
-- REPLICATION only: it may stream WAL and take base backups, and read no table as itself.
ALTER ROLE :"replicator" WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD :'replication_password';
-- Reserved at once, so WAL from this moment on is kept for a replica that is still cloning.
SELECT pg_create_physical_replication_slot(s, true) FROM unnest(string_to_array(:'slots', ' ')) AS s
  WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = s);
-- A slot of a replica the plan no longer has holds WAL for nobody (up to max_slot_wal_keep_size):
-- dropped, unless something still streams from it.
SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
  WHERE slot_type = 'physical' AND slot_name LIKE :'prefix' || '%' AND NOT active
    AND slot_name <> ALL (string_to_array(:'slots', ' '));
