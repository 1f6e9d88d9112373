//! Numbered schema migrations. The version lives in SQLite's `user_version`; a migration is
//! only ever appended, never edited, so an existing store upgrades without losing data.

use anyhow::{bail, Result};
use rusqlite::Connection;
use rusqlite_migration::{Migrations, SchemaVersion, M};

/// Every migration, in order. A function, not a constant: migration 10 has a hook (Rust code).
pub(super) fn migrations() -> Vec<M<'static>> {
    vec![
        // 1: the design's tasks table, every rejected row, and the local target's events.
        M::up(
            r#"
CREATE TABLE tasks (
    id                 TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL,
    task_type          TEXT NOT NULL,
    entity_type        TEXT NOT NULL,
    file_url           TEXT NOT NULL,
    file_type          TEXT NOT NULL,
    task_status        TEXT NOT NULL,
    total_records      INTEGER,
    processed_records  INTEGER NOT NULL DEFAULT 0,
    successful_records INTEGER NOT NULL DEFAULT 0,
    failed_records     INTEGER NOT NULL DEFAULT 0,
    error_summary      TEXT,
    metadata           TEXT NOT NULL DEFAULT '{}',
    started_at         TEXT,
    completed_at       TEXT,
    failed_at          TEXT,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    created_by         TEXT NOT NULL,
    updated_by         TEXT NOT NULL,
    status             TEXT NOT NULL DEFAULT 'published'
);
CREATE INDEX idx_tasks_tenant ON tasks(tenant_id, task_type, entity_type, status);
CREATE INDEX idx_tasks_user ON tasks(tenant_id, created_by);
CREATE INDEX idx_tasks_created ON tasks(tenant_id, created_at);

CREATE TABLE task_errors (
    id       INTEGER PRIMARY KEY,
    task_id  TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    line     INTEGER NOT NULL,
    "column" TEXT,
    kind     TEXT NOT NULL,
    reason   TEXT NOT NULL,
    -- for an element of a JSON array, whose line is its index: the file line it starts on
    element_line INTEGER,
    raw      TEXT
);
CREATE INDEX idx_task_errors_task ON task_errors(task_id, line);

-- Tenants get a small number so that the unique index on events stays small: it is written
-- in random order and must stay in the page cache to keep imports fast.
CREATE TABLE tenants (
    tenant_key INTEGER PRIMARY KEY,
    tenant_id  TEXT NOT NULL UNIQUE
);

CREATE TABLE events (
    id                   INTEGER PRIMARY KEY,
    tenant_key           INTEGER NOT NULL REFERENCES tenants(tenant_key),
    tenant_id            TEXT NOT NULL,
    event_id             TEXT NOT NULL,
    event_name           TEXT NOT NULL,
    external_customer_id TEXT NOT NULL,
    customer_id          TEXT,
    timestamp            TEXT NOT NULL,
    source               TEXT,
    properties           TEXT NOT NULL DEFAULT '{}',
    task_id              TEXT NOT NULL,
    source_line          INTEGER NOT NULL
);
CREATE UNIQUE INDEX idx_events_tenant_event ON events(tenant_key, event_id);
"#,
        ),
        // 2: checkpoints, so that an interrupted task continues where it was.
        M::up(
            r#"
CREATE TABLE task_checkpoints (
    task_id         TEXT PRIMARY KEY REFERENCES tasks(id) ON DELETE CASCADE,
    position        TEXT NOT NULL,
    records         INTEGER NOT NULL,
    source_size     INTEGER,
    source_mtime_ns INTEGER,
    updated_at      TEXT NOT NULL
);
"#,
        ),
        // 3: prices, customers and features, with FlexPrice's columns.
        M::up(
            r#"
CREATE TABLE prices (
    id                           TEXT NOT NULL,
    tenant_key                   INTEGER NOT NULL REFERENCES tenants(tenant_key),
    tenant_id                    TEXT NOT NULL,
    amount                       TEXT,
    currency                     TEXT NOT NULL,
    entity_type                  TEXT NOT NULL,
    entity_id                    TEXT NOT NULL,
    type                         TEXT NOT NULL,
    price_unit_type              TEXT NOT NULL DEFAULT 'FIAT',
    billing_period               TEXT NOT NULL,
    billing_period_count         INTEGER NOT NULL DEFAULT 1,
    billing_model                TEXT NOT NULL,
    invoice_cadence              TEXT NOT NULL,
    meter_id                     TEXT,
    lookup_key                   TEXT,
    trial_period_days            INTEGER,
    description                  TEXT,
    display_name                 TEXT,
    tier_mode                    TEXT,
    tiers                        TEXT,
    transform_quantity_divide_by INTEGER,
    transform_quantity_round     TEXT,
    price_unit_config_price_unit TEXT,
    price_unit_config_amount     TEXT,
    price_unit_config_tiers      TEXT,
    start_date                   TEXT,
    end_date                     TEXT,
    min_quantity                 TEXT,
    group_id                     TEXT,
    metadata                     TEXT NOT NULL DEFAULT '{}',
    task_id                      TEXT NOT NULL,
    source_line                  INTEGER NOT NULL,
    created_at                   TEXT NOT NULL,
    updated_at                   TEXT NOT NULL
);
CREATE UNIQUE INDEX idx_prices_tenant_id ON prices(tenant_key, id);

CREATE TABLE customers (
    id                  TEXT NOT NULL,
    tenant_key          INTEGER NOT NULL REFERENCES tenants(tenant_key),
    tenant_id           TEXT NOT NULL,
    external_id         TEXT NOT NULL,
    name                TEXT NOT NULL,
    email               TEXT,
    address_line1       TEXT,
    address_line2       TEXT,
    address_city        TEXT,
    address_state       TEXT,
    address_postal_code TEXT,
    address_country     TEXT,
    timezone            TEXT NOT NULL DEFAULT 'UTC',
    metadata            TEXT NOT NULL DEFAULT '{}',
    task_id             TEXT NOT NULL,
    source_line         INTEGER NOT NULL,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);
CREATE UNIQUE INDEX idx_customers_tenant_id ON customers(tenant_key, id);
CREATE UNIQUE INDEX idx_customers_external_id ON customers(tenant_key, external_id);

CREATE TABLE features (
    id                      TEXT NOT NULL,
    tenant_key              INTEGER NOT NULL REFERENCES tenants(tenant_key),
    tenant_id               TEXT NOT NULL,
    name                    TEXT NOT NULL,
    type                    TEXT NOT NULL,
    lookup_key              TEXT,
    description             TEXT,
    unit_singular           TEXT,
    unit_plural             TEXT,
    meter_name              TEXT,
    event_name              TEXT,
    aggregation_type        TEXT,
    aggregation_field       TEXT,
    aggregation_multiplier  TEXT,
    aggregation_bucket_size TEXT,
    reset_usage             TEXT,
    metadata                TEXT NOT NULL DEFAULT '{}',
    task_id                 TEXT NOT NULL,
    source_line             INTEGER NOT NULL,
    created_at              TEXT NOT NULL,
    updated_at              TEXT NOT NULL
);
CREATE UNIQUE INDEX idx_features_tenant_id ON features(tenant_key, id);
CREATE UNIQUE INDEX idx_features_lookup_key ON features(tenant_key, lookup_key) WHERE lookup_key IS NOT NULL;
"#,
        ),
        // What each FlexPrice server has confirmed: a rerun, a retry or another task skips what
        // is here instead of sending it twice.
        M::up(
            r#"
CREATE TABLE remote_targets (
    target_key     INTEGER PRIMARY KEY,
    url            TEXT NOT NULL,
    environment_id TEXT NOT NULL,
    tenant_id      TEXT NOT NULL,
    entity_type    TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    UNIQUE (url, environment_id, tenant_id, entity_type)
);

CREATE TABLE ledger_tasks (
    task_key INTEGER PRIMARY KEY,
    task_id  TEXT NOT NULL UNIQUE
);

-- Small rows (integer keys for the server and the task) keep the index in the page cache;
-- no foreign keys, whose checks would double the work of each insert.
CREATE TABLE delivered_records (
    target_key  INTEGER NOT NULL,
    record_id   BLOB NOT NULL, -- the id's 128-bit xxh3 hash

    task_key    INTEGER NOT NULL,
    source_line INTEGER NOT NULL,
    PRIMARY KEY (target_key, record_id)
) WITHOUT ROWID;
"#,
        ),
        // Phase 2: webhook deliveries written in the transaction of the change they announce (an
        // outbox, so a crash loses none), and the leases of tasks workers run.
        M::up(
            r#"
CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    task_id         TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    event           TEXT NOT NULL,
    url             TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    delivered_at    TEXT
);
CREATE INDEX idx_webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
CREATE INDEX idx_webhook_deliveries_task ON webhook_deliveries(task_id);

CREATE TABLE task_leases (
    task_id    TEXT PRIMARY KEY REFERENCES tasks(id) ON DELETE CASCADE,
    worker_id  TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
"#,
        ),
        // 6: the content key of each delivered event (see store::ledger::content_key), so that an
        // id sent again with other content is told from a resend. Rows delivered before keep NULL:
        // their resends count as duplicates, as they did.
        M::up("ALTER TABLE delivered_records ADD COLUMN content BLOB;"),
        // 7: a server's records are per API key too (a key stored in FlexPrice is bound to its
        // environment, whatever X-Environment-ID says): `key_id` is a hash of the key, never the
        // key. Targets recorded before keep '' and are adopted by the first key that uses them
        // (see store::ledger::Ledger::open).
        M::up(
            r#"
CREATE TABLE remote_targets_v7 (
    target_key     INTEGER PRIMARY KEY,
    url            TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    environment_id TEXT NOT NULL,
    tenant_id      TEXT NOT NULL,
    entity_type    TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    UNIQUE (url, key_id, environment_id, tenant_id, entity_type)
);
INSERT INTO remote_targets_v7 (target_key, url, key_id, environment_id, tenant_id, entity_type, created_at)
    SELECT target_key, url, '', environment_id, tenant_id, entity_type, created_at FROM remote_targets;
DROP TABLE remote_targets;
ALTER TABLE remote_targets_v7 RENAME TO remote_targets;
"#,
        ),
        // 8: a customer's `contact` (FlexPrice's CreateCustomerRequest, at most 20 characters).
        M::up("ALTER TABLE customers ADD COLUMN contact TEXT;"),
        // 9: the rest of a FlexPrice catalog (plans, addons, entitlements, subscriptions), and
        // prices that name their plan and meter by key. A key column keeps what the file said, its
        // id column what the key resolved to in this store.
        M::up(
            r#"
CREATE TABLE plans (
    id            TEXT NOT NULL,
    tenant_key    INTEGER NOT NULL REFERENCES tenants(tenant_key),
    tenant_id     TEXT NOT NULL,
    name          TEXT NOT NULL,
    lookup_key    TEXT,
    description   TEXT,
    display_order INTEGER,
    metadata      TEXT NOT NULL DEFAULT '{}',
    task_id       TEXT NOT NULL,
    source_line   INTEGER NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE UNIQUE INDEX idx_plans_tenant_id ON plans(tenant_key, id);
CREATE UNIQUE INDEX idx_plans_lookup_key ON plans(tenant_key, lookup_key) WHERE lookup_key IS NOT NULL;

CREATE TABLE addons (
    id          TEXT NOT NULL,
    tenant_key  INTEGER NOT NULL REFERENCES tenants(tenant_key),
    tenant_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    lookup_key  TEXT NOT NULL,
    description TEXT,
    metadata    TEXT NOT NULL DEFAULT '{}',
    task_id     TEXT NOT NULL,
    source_line INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE UNIQUE INDEX idx_addons_tenant_id ON addons(tenant_key, id);
CREATE UNIQUE INDEX idx_addons_lookup_key ON addons(tenant_key, lookup_key);

CREATE TABLE entitlements (
    id                 TEXT NOT NULL,
    tenant_key         INTEGER NOT NULL REFERENCES tenants(tenant_key),
    tenant_id          TEXT NOT NULL,
    entity_type        TEXT NOT NULL,
    entity_key         TEXT,
    entity_id          TEXT NOT NULL,
    feature_key        TEXT,
    feature_id         TEXT NOT NULL,
    feature_type       TEXT NOT NULL,
    is_enabled         INTEGER,
    usage_limit        INTEGER,
    usage_reset_period TEXT,
    is_soft_limit      INTEGER,
    static_value       TEXT,
    config_value       TEXT,
    metadata           TEXT NOT NULL DEFAULT '{}',
    task_id            TEXT NOT NULL,
    source_line        INTEGER NOT NULL,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL
);
CREATE UNIQUE INDEX idx_entitlements_tenant_id ON entitlements(tenant_key, id);
CREATE UNIQUE INDEX idx_entitlements_entity_feature ON entitlements(tenant_key, entity_type, entity_id, feature_id);

CREATE TABLE subscriptions (
    id                   TEXT NOT NULL,
    tenant_key           INTEGER NOT NULL REFERENCES tenants(tenant_key),
    tenant_id            TEXT NOT NULL,
    external_customer_id TEXT NOT NULL,
    customer_id          TEXT,
    plan_key             TEXT,
    plan_id              TEXT NOT NULL,
    currency             TEXT NOT NULL,
    billing_period       TEXT NOT NULL,
    billing_period_count INTEGER NOT NULL DEFAULT 1,
    billing_cycle        TEXT,
    billing_anchor       TEXT,
    start_date           TEXT,
    end_date             TEXT,
    lookup_key           TEXT,
    collection_method    TEXT,
    payment_behavior     TEXT,
    subscription_status  TEXT NOT NULL DEFAULT 'draft',
    phases               TEXT,
    metadata             TEXT NOT NULL DEFAULT '{}',
    task_id              TEXT NOT NULL,
    source_line          INTEGER NOT NULL,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL
);
CREATE UNIQUE INDEX idx_subscriptions_tenant_id ON subscriptions(tenant_key, id);
CREATE INDEX idx_subscriptions_customer_plan ON subscriptions(tenant_key, external_customer_id, plan_id);
CREATE INDEX idx_subscriptions_lookup_key ON subscriptions(tenant_key, lookup_key) WHERE lookup_key IS NOT NULL;

ALTER TABLE prices ADD COLUMN entity_key TEXT;
ALTER TABLE prices ADD COLUMN feature_key TEXT;
"#,
        ),
        // 10: events keep their tenant and task as small integers, and a 64-bit key of their
        // (tenant, event_id) for the unique index (issue 14). The tenant's and the task's ids as
        // text were a third of each row (73 of about 230 bytes), and every byte of a row is
        // written twice (the WAL, then the checkpoint); an integer key makes the index that
        // every insert probes at a random place about a third smaller, and quicker to compare.
        // See store::events for the rare id whose key another id holds. `events` stays, as a
        // view with the columns it had, for readers of the store (sqlite3, the tests); only the
        // store writes `event_rows`. No foreign keys: tenants and task keys are never deleted,
        // and each check would cost a lookup per insert. The hook copies the events and makes
        // the indexes.
        M::up_with_hook(
            r#"
CREATE TABLE task_keys (
    task_key INTEGER PRIMARY KEY,
    task_id  TEXT NOT NULL UNIQUE
);
CREATE TABLE event_rows (
    id                   INTEGER PRIMARY KEY,
    key                  INTEGER,
    tenant_key           INTEGER NOT NULL,
    event_id             TEXT NOT NULL,
    event_name           TEXT NOT NULL,
    external_customer_id TEXT NOT NULL,
    customer_id          TEXT,
    timestamp            TEXT NOT NULL,
    source               TEXT,
    properties           TEXT NOT NULL DEFAULT '{}',
    task_key             INTEGER NOT NULL,
    source_line          INTEGER NOT NULL
);
INSERT INTO task_keys (task_id) SELECT DISTINCT task_id FROM events ORDER BY task_id;
"#,
            super::events::migrate_to_event_rows,
        ),
        // 11: the keys of events move out of a unique index on `event_rows` into two tables
        // (issue 14): `event_keys_recent` takes each new key, and is small enough to stay in
        // the page cache whatever its order; once it holds `events::RECENT_KEYS_MAX` keys
        // they are merged, in key order, into `event_keys`. Inserting hashed keys at random
        // into one index of millions read and wrote a page of it per event once it outgrew
        // the cache (10M events ran at a fifth of 1M's rate); a merge in key order writes
        // each page of it once per merge, and a probe only reads. The keys of a store are
        // copied once, in key order (read from the index being dropped, so no sort).
        M::up(
            r#"
CREATE TABLE event_keys (
    key INTEGER PRIMARY KEY,
    row INTEGER NOT NULL
);
CREATE TABLE event_keys_recent (
    key INTEGER PRIMARY KEY,
    row INTEGER NOT NULL
);
-- recent: keys in event_keys_recent; merged: keys in event_keys; merge_id: a random number
-- each merge writes, so that a process can tell whether its filter of event_keys (see
-- store::events::MergedKeys) is still that table's.
CREATE TABLE event_keys_state (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    recent   INTEGER NOT NULL,
    merged   INTEGER NOT NULL,
    merge_id INTEGER NOT NULL
);
INSERT INTO event_keys (key, row) SELECT key, id FROM event_rows WHERE key IS NOT NULL ORDER BY key;
INSERT INTO event_keys_state (id, recent, merged, merge_id) SELECT 1, 0, count(*), 0 FROM event_keys;
DROP INDEX idx_event_rows_key;
"#,
        ),
        // 12: the delivery ledger's ids, hashed too, in the same two tiers as event keys (see
        // store::tiers): `delivered_records` becomes a view over both, for readers of the store.
        M::up(
            r#"
ALTER TABLE delivered_records RENAME TO delivered_records_merged;
CREATE TABLE delivered_records_recent (
    target_key  INTEGER NOT NULL,
    record_id   BLOB NOT NULL,
    task_key    INTEGER NOT NULL,
    source_line INTEGER NOT NULL,
    content     BLOB,
    PRIMARY KEY (target_key, record_id)
) WITHOUT ROWID;
CREATE VIEW delivered_records AS
    SELECT target_key, record_id, task_key, source_line, content FROM delivered_records_merged
    UNION ALL
    SELECT target_key, record_id, task_key, source_line, content FROM delivered_records_recent;
CREATE TABLE delivered_records_state (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    recent   INTEGER NOT NULL,
    merged   INTEGER NOT NULL,
    merge_id INTEGER NOT NULL
);
INSERT INTO delivered_records_state (id, recent, merged, merge_id)
    SELECT 1, 0, count(*), 0 FROM delivered_records_merged;
"#,
        ),
        // 13: the event keys not merged yet are kept in memory by each process, read from the
        // rows above `merged_upto` (store::recent_keys), instead of in `event_keys_recent`,
        // whose insert at a random place per event read a page back from the file once the
        // batch's new rows crowded it out of the cache (issue 14). Its keys are merged now.
        // And a middle tier between them and `event_keys`.
        M::up(
            r#"
INSERT INTO event_keys (key, row) SELECT key, row FROM event_keys_recent ORDER BY key;
DROP TABLE event_keys_recent;
-- merged_upto: every keyed row of event_rows up to this id has its key in event_keys; the keys
-- of the rows above it are the recent ones. write_id: a random number each transaction that
-- takes keys writes, so that a process can tell whether its keys in memory are still right.
ALTER TABLE event_keys_state ADD COLUMN merged_upto INTEGER NOT NULL DEFAULT 0;
ALTER TABLE event_keys_state ADD COLUMN write_id INTEGER NOT NULL DEFAULT 0;
-- Merged keys go first into event_keys_middle (`middle` of them), merged into event_keys once
-- it holds enough (store::events::middle_max), so that no merge rewrites the whole store's
-- keys each time; `merged` counts the keys of both tables.
CREATE TABLE event_keys_middle (
    key INTEGER PRIMARY KEY,
    row INTEGER NOT NULL
);
ALTER TABLE event_keys_state ADD COLUMN middle INTEGER NOT NULL DEFAULT 0;
UPDATE event_keys_state SET merged = merged + recent, recent = 0, merge_id = random(),
    merged_upto = (SELECT coalesce(max(id), 0) FROM event_rows);
"#,
        ),
        // 14: the delivery ledger as event keys are since 13 (issue 14: sending 10M events ran
        // at 0.56x the rate of 1M): its rows are appended to `delivered_rows` in id order, the
        // ids not merged yet are kept in memory (store::recent_keys), and the merged ones go
        // through `delivered_keys_middle` into `delivered_keys` (64-bit row keys, see
        // store::ledger::row_key). The two tables of 12 were a B-tree insert at a random place
        // per record, and each merge rewrote the whole merged table. The hook copies them.
        M::up_with_hook(
            r#"
CREATE TABLE delivered_rows (
    id          INTEGER PRIMARY KEY,
    key         INTEGER, -- NULL: another id of the target holds this row key
    target_key  INTEGER NOT NULL,
    record_id   BLOB NOT NULL,
    task_key    INTEGER NOT NULL,
    source_line INTEGER NOT NULL,
    content     BLOB
);
-- Ids whose row key another id holds: in practice none.
CREATE UNIQUE INDEX idx_delivered_rows_unkeyed ON delivered_rows (target_key, record_id) WHERE key IS NULL;
CREATE TABLE delivered_keys_middle (
    key INTEGER PRIMARY KEY,
    row INTEGER NOT NULL
);
CREATE TABLE delivered_keys (
    key INTEGER PRIMARY KEY,
    row INTEGER NOT NULL
);
ALTER TABLE delivered_records_state ADD COLUMN merged_upto INTEGER NOT NULL DEFAULT 0;
ALTER TABLE delivered_records_state ADD COLUMN write_id INTEGER NOT NULL DEFAULT 0;
ALTER TABLE delivered_records_state ADD COLUMN middle INTEGER NOT NULL DEFAULT 0;
"#,
            super::ledger::migrate_to_delivered_rows,
        ),
        // 15: the merged keys of both sets (events, delivery ledger) in blocks of 500 (key, row)
        // pairs a row (store::key_blocks) instead of a row a pair: a merge inserted 0.4 µs a
        // key even into an empty table, and merges took 8 of a 10M import's 23 s (issue 14).
        // The hook copies the four tables of 13 and 14 and drops them.
        M::up_with_hook(
            r#"
CREATE TABLE event_key_blocks (
    last_key INTEGER PRIMARY KEY, -- the last key of the block
    pairs    BLOB NOT NULL        -- (key, row) pairs in key order, each two little-endian i64
);
CREATE TABLE event_key_blocks_middle (
    last_key INTEGER PRIMARY KEY,
    pairs    BLOB NOT NULL
);
CREATE TABLE delivered_key_blocks (
    last_key INTEGER PRIMARY KEY,
    pairs    BLOB NOT NULL
);
CREATE TABLE delivered_key_blocks_middle (
    last_key INTEGER PRIMARY KEY,
    pairs    BLOB NOT NULL
);
"#,
            super::key_blocks::migrate_to_blocks,
        ),
    ]
}

pub fn migrate(conn: &mut Connection) -> Result<()> {
    let all = migrations();
    let count = all.len();
    let migrations = Migrations::new(all);
    if let SchemaVersion::Outside(found) = migrations.current_version(conn)? {
        bail!(
            "the store's schema is version {found}, newer than this flexprice-import knows ({}); \
             upgrade flexprice-import",
            count
        );
    }
    // Another process may migrate between our reading the version and our transaction: then
    // ours fails ("table already exists") while the store is in fact up to date.
    let latest = SchemaVersion::Inside(std::num::NonZeroUsize::new(count).expect("migrations exist"));
    let mut attempts = 0;
    loop {
        match migrations.to_latest(conn) {
            Ok(()) => return Ok(()),
            Err(_) if migrations.current_version(conn)? == latest => return Ok(()),
            Err(e) if attempts >= 5 => return Err(e.into()),
            Err(_) => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        Migrations::new(migrations()).validate().unwrap();
    }

    #[test]
    fn a_newer_store_is_refused_not_damaged() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        let err = migrate(&mut conn).unwrap_err().to_string();
        assert!(err.contains("version 99"), "{err}");
    }
}
