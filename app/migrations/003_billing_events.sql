-- Up Migration
-- Billing (Stripe customers, subscriptions, invoices, received webhook events) and the audit log.
-- New tables only. Tenant tables carry org_id and every query filters by it (README: Tenant
-- isolation); Stripe ids are the natural keys because webhooks name objects by them.

-- The foreign keys lock organizations briefly; never queue behind a long transaction.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '60s';

CREATE TABLE billing_customers (
  org_id uuid PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
  stripe_customer_id text NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- One row per Stripe subscription. stripe_event_created orders updates: an event older than the
-- one the row was last written from is ignored, so events delivered out of order cannot undo a
-- later state (README: Billing).
CREATE TABLE subscriptions (
  stripe_subscription_id text PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  stripe_customer_id text NOT NULL,
  status text NOT NULL,
  price_id text,
  plan_id text,
  cancel_at_period_end boolean NOT NULL DEFAULT false,
  current_period_end timestamptz,
  stripe_event_created timestamptz NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscriptions_org_idx ON subscriptions (org_id, updated_at DESC);

CREATE TABLE invoices (
  stripe_invoice_id text PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  stripe_subscription_id text,
  status text,
  currency text NOT NULL,
  amount_due bigint NOT NULL,
  amount_paid bigint NOT NULL,
  hosted_invoice_url text,
  period_start timestamptz,
  period_end timestamptz,
  created_at timestamptz NOT NULL,
  stripe_event_created timestamptz NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX invoices_org_created_idx ON invoices (org_id, created_at DESC, stripe_invoice_id);

-- Every verified webhook event, recorded once by its Stripe id (a redelivery finds the row and
-- changes nothing); the worker processes it and sets processed_at.
CREATE TABLE stripe_events (
  id text PRIMARY KEY,
  type text NOT NULL,
  created_at timestamptz NOT NULL,
  payload jsonb NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  processed_at timestamptz
);
CREATE INDEX stripe_events_received_idx ON stripe_events (received_at);

-- The audit log. No foreign keys on purpose: an event outlives the user or organization it
-- names. Append-only for the app's logins: see the trigger below.
CREATE TABLE audit_events (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  org_id uuid,
  actor_user_id uuid,
  kind text NOT NULL CHECK (kind ~ '^[a-z_]+\.[a-z_]+$'),
  request_id text,
  ip inet,
  data jsonb NOT NULL DEFAULT '{}',
  occurred_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_events_org_idx ON audit_events (org_id, id DESC);
CREATE INDEX audit_events_occurred_idx ON audit_events (occurred_at);

-- Append-only, enforced by the table itself. Grants cannot do it: the platform gives the app's
-- logins SELECT, INSERT, UPDATE and DELETE on every table the owner creates (ALTER DEFAULT
-- PRIVILEGES, re-applied to all tables when the database is provisioned), so a REVOKE here would
-- not last. Only the table's owner (migrations, prune_audit_events below) may change or remove rows.
CREATE FUNCTION audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT relowner FROM pg_class WHERE oid = TG_RELID) <> (SELECT oid FROM pg_roles WHERE rolname = current_user) THEN
    RAISE EXCEPTION 'audit_events is append-only: % is not allowed for %', TG_OP, current_user
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END;
$$;
CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- Retention: the worker's daily job calls this. SECURITY DEFINER runs it as the owner, the one
-- role the trigger lets delete. Any login may call it (EXECUTE is PUBLIC's), so it refuses to
-- keep less than 30 days: a stolen app login can prune no more than that.
CREATE FUNCTION prune_audit_events(keep_days integer) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  removed bigint;
BEGIN
  IF keep_days IS NULL OR keep_days < 30 THEN
    RAISE EXCEPTION 'prune_audit_events: keep_days must be at least 30, got %', keep_days
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  DELETE FROM public.audit_events WHERE occurred_at < now() - make_interval(days => keep_days);
  GET DIAGNOSTICS removed = ROW_COUNT;
  RETURN removed;
END;
$$;

-- Down Migration
DROP FUNCTION prune_audit_events(integer);
DROP TABLE audit_events;
DROP FUNCTION audit_events_append_only();
DROP TABLE stripe_events;
DROP TABLE invoices;
DROP TABLE subscriptions;
DROP TABLE billing_customers;
