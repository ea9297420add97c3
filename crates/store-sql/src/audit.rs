//! The audit log's SQL, shared by both backends ([`impl_sql_audit!`], expanded by
//! [`impl_sql_store!`](crate::impl_sql_store)).
//!
//! An append locks the log's head row with `UPDATE … RETURNING` (a write, so SQLite takes its
//! write lock at once and PostgreSQL a row lock), chains the new entries after it, inserts them
//! with multi-row `INSERT`s and moves the head, all in one transaction: concurrent appenders in
//! any number of processes queue on the head row and the chain never forks.

/// `v` as a JSON string literal (quotes and escapes as `params` stores them).
pub fn serde_json_string(v: &str) -> String {
    serde_json::Value::String(v.to_owned()).to_string()
}

/// The index a SQLite audit search should use: the most selective filter's, each ending in `at`
/// so results come newest first without a sort (except for status classes and CIDRs, which are
/// ranges over the index's second column).
pub fn sqlite_index(q: &portcullis_store::AuditQuery) -> &'static str {
    match q {
        q if q.credential_id.is_some() => "audit_by_credential",
        q if q.user_id.is_some() => "audit_by_user",
        q if q.client_id.is_some() => "audit_by_client",
        q if q.tool.is_some() => "audit_by_tool",
        q if q.route.as_deref().is_some_and(|r| r.contains('{')) => "audit_by_route",
        q if q.route.is_some() => "audit_by_path",
        q if q.ip.is_some() => "audit_by_ip",
        q if q.status.is_some_and(|(lo, hi)| lo == hi) => "audit_by_status",
        q if q.event.is_some() => "audit_by_event",
        q if q.credential_kind.is_some() => "audit_by_kind",
        q if q.pii == Some(true) => "audit_by_pii",
        q if q.status.is_some() => "audit_by_status",
        _ => "audit_by_time",
    }
}

/// Implements [`AuditStore`](portcullis_store::AuditStore) and
/// [`AuditSinkStore`](portcullis_store::AuditSinkStore) for `$store`.
#[macro_export]
macro_rules! impl_sql_audit {
    ($store:ty, $db:ty) => {
        const _: () = {
            use $crate::portcullis_domain::audit::{Frontier, GENESIS, Hash};
            use $crate::portcullis_domain::{AuditEntryId, AuditSinkId, WorkspaceId};
            use $crate::portcullis_store::*;
            use $crate::sqlx::Row as _;
            use $crate::time::OffsetDateTime;

            type DbRow = <$db as $crate::sqlx::Database>::Row;
            type Builder = $crate::sqlx::QueryBuilder<$db>;

            fn db(e: $crate::sqlx::Error) -> StoreError {
                $crate::map_err(e, "record")
            }

            fn col<'r, T>(row: &'r DbRow, name: &str) -> StoreResult<T>
            where
                T: $crate::sqlx::Decode<'r, $db> + $crate::sqlx::Type<$db>,
            {
                row.try_get::<T, _>(name).map_err(|e| StoreError::Corrupt(format!("column {name}: {e}")))
            }

            fn hash(row: &DbRow, name: &str) -> StoreResult<Hash> {
                col::<Vec<u8>>(row, name)?
                    .try_into()
                    .map_err(|_| StoreError::Corrupt(format!("{name} is not 32 bytes")))
            }

            fn secs(row: &DbRow, name: &str) -> StoreResult<OffsetDateTime> {
                $crate::decode::time(col::<i64>(row, name)?)
            }

            fn secs_opt(row: &DbRow, name: &str) -> StoreResult<Option<OffsetDateTime>> {
                col::<Option<i64>>(row, name)?.map($crate::decode::time).transpose()
            }

            fn frontier(size: i64, bytes: &[u8]) -> StoreResult<Frontier> {
                Frontier::from_bytes(size as u64, bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
            }

            fn entry(row: &DbRow) -> StoreResult<AuditEntry> {
                let at: i64 = col(row, "at")?;
                let ip: Option<String> = col(row, "ip")?;
                let status: Option<i64> = col(row, "status")?;
                let record = AuditRecord {
                    id: AuditEntryId::from_string(col::<String>(row, "id")?),
                    at: from_micros(at).ok_or_else(|| StoreError::Corrupt(format!("time {at}")))?,
                    workspace_id: col::<Option<String>>(row, "workspace_id")?.map(WorkspaceId::from_string),
                    event: col(row, "event")?,
                    actor: col(row, "actor")?,
                    subject: col(row, "subject")?,
                    credential_kind: col(row, "credential_kind")?,
                    credential_id: col(row, "credential_id")?,
                    user_id: col(row, "user_id")?,
                    client_id: col(row, "client_id")?,
                    ip: ip
                        .map(|s| s.parse().map_err(|_| StoreError::Corrupt(format!("address {s}"))))
                        .transpose()?,
                    method: col(row, "method")?,
                    route: col(row, "route")?,
                    path: col(row, "path")?,
                    tool: col(row, "tool")?,
                    params: col(row, "params")?,
                    status: status
                        .map(|s| u16::try_from(s).map_err(|_| StoreError::Corrupt(format!("status {s}"))))
                        .transpose()?,
                    error: col(row, "error")?,
                    duration_us: col(row, "duration_us")?,
                    request_id: col(row, "request_id")?,
                    pii_access: col(row, "pii_access")?,
                };
                Ok(AuditEntry {
                    log: col(row, "log")?,
                    seq: col(row, "seq")?,
                    record,
                    prev_hash: hash(row, "prev_hash")?,
                    hash: hash(row, "hash")?,
                })
            }

            fn head(row: &DbRow) -> StoreResult<AuditHead> {
                let size: i64 = col(row, "size")?;
                Ok(AuditHead {
                    log: col(row, "log")?,
                    size,
                    head: hash(row, "head")?,
                    frontier: frontier(size, &col::<Vec<u8>>(row, "frontier")?)?,
                    updated_at: secs(row, "updated_at")?,
                })
            }

            fn checkpoint(row: &DbRow) -> StoreResult<AuditCheckpoint> {
                let size: i64 = col(row, "size")?;
                Ok(AuditCheckpoint {
                    log: col(row, "log")?,
                    size,
                    root: hash(row, "root")?,
                    head: hash(row, "head")?,
                    frontier: frontier(size, &col::<Vec<u8>>(row, "frontier")?)?,
                    note: col(row, "note")?,
                    created_at: secs(row, "created_at")?,
                })
            }

            fn sink(row: &DbRow) -> StoreResult<AuditSink> {
                Ok(AuditSink {
                    id: AuditSinkId::from_string(col::<String>(row, "id")?),
                    workspace_id: WorkspaceId::from_string(col::<String>(row, "workspace_id")?),
                    url: col(row, "url")?,
                    secret_sealed: col(row, "secret_sealed")?,
                    cursor: col(row, "next_seq")?,
                    created_at: secs(row, "created_at")?,
                    disabled_at: secs_opt(row, "disabled_at")?,
                    failures: col(row, "failures")?,
                    last_error: col(row, "last_error")?,
                    last_delivery_at: secs_opt(row, "last_delivery_at")?,
                })
            }

            /// Rows per multi-row INSERT: 26 columns × 300 stays far below both databases'
            /// bind-parameter limits.
            const INSERT_CHUNK: usize = 300;

            impl AuditStore for $store {
                async fn append_audit(
                    &self,
                    records: &[AuditRecord],
                    now: OffsetDateTime,
                ) -> StoreResult<Vec<(String, i64)>> {
                    // Group by log, keeping each log's records in arrival order.
                    let mut logs: Vec<(&str, Vec<usize>)> = Vec::new();
                    for (i, r) in records.iter().enumerate() {
                        match logs.iter_mut().find(|(l, _)| *l == r.log()) {
                            Some((_, v)) => v.push(i),
                            None => logs.push((r.log(), vec![i])),
                        }
                    }
                    // Lock heads in a fixed order so two appenders never deadlock.
                    logs.sort_by(|a, b| a.0.cmp(b.0));
                    let mut placed = vec![(String::new(), 0i64); records.len()];
                    let mut tx = self.pool.begin().await.map_err(db)?;
                    for (log, idx) in logs {
                        $crate::sqlx::query(
                            "INSERT INTO audit_logs (log, size, head, frontier, updated_at) \
                             VALUES ($1, 0, $2, $3, $4) ON CONFLICT (log) DO NOTHING",
                        )
                        .bind(log)
                        .bind(GENESIS.to_vec())
                        .bind(Vec::<u8>::new())
                        .bind(now.unix_timestamp())
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                        let row = $crate::sqlx::query(
                            "UPDATE audit_logs SET updated_at = $2 WHERE log = $1 \
                             RETURNING log, size, head, frontier, updated_at",
                        )
                        .bind(log)
                        .bind(now.unix_timestamp())
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(db)?;
                        let mut h = head(&row)?;
                        let mut chained = Vec::with_capacity(idx.len());
                        for i in &idx {
                            let e = AuditEntry::chain(log, h.size, h.head, records[*i].clone());
                            h.frontier.push(e.hash);
                            h.head = e.hash;
                            placed[*i] = (log.to_owned(), h.size);
                            h.size += 1;
                            chained.push(e);
                        }
                        for chunk in chained.chunks(INSERT_CHUNK) {
                            let mut b = Builder::new(
                                "INSERT INTO audit_entries (log, seq, id, at, workspace_id, event, actor, \
                                 subject, credential_kind, credential_id, user_id, client_id, ip, ip_key, \
                                 method, route, path, tool, params, status, error, duration_us, request_id, \
                                 pii_access, prev_hash, hash) ",
                            );
                            b.push_values(chunk, |mut v, e| {
                                let r = &e.record;
                                v.push_bind(e.log.clone())
                                    .push_bind(e.seq)
                                    .push_bind(r.id.as_str().to_owned())
                                    .push_bind(r.at_micros())
                                    .push_bind(r.workspace_id.as_ref().map(|w| w.as_str().to_owned()))
                                    .push_bind(r.event.clone())
                                    .push_bind(r.actor.clone())
                                    .push_bind(r.subject.clone())
                                    .push_bind(r.credential_kind.clone())
                                    .push_bind(r.credential_id.clone())
                                    .push_bind(r.user_id.clone())
                                    .push_bind(r.client_id.clone())
                                    .push_bind(r.ip.map(|ip| ip.to_string()))
                                    .push_bind(r.ip.map(|ip| ip_key(ip).to_vec()))
                                    .push_bind(r.method.clone())
                                    .push_bind(r.route.clone())
                                    .push_bind(r.path.clone())
                                    .push_bind(r.tool.clone())
                                    .push_bind(r.params.clone())
                                    .push_bind(r.status.map(i64::from))
                                    .push_bind(r.error.clone())
                                    .push_bind(r.duration_us)
                                    .push_bind(r.request_id.clone())
                                    .push_bind(r.pii_access)
                                    .push_bind(e.prev_hash.to_vec())
                                    .push_bind(e.hash.to_vec());
                            });
                            b.build().execute(&mut *tx).await.map_err(db)?;
                        }
                        $crate::sqlx::query(
                            "UPDATE audit_logs SET size = $2, head = $3, frontier = $4 WHERE log = $1",
                        )
                        .bind(log)
                        .bind(h.size)
                        .bind(h.head.to_vec())
                        .bind(h.frontier.to_bytes())
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                    }
                    tx.commit().await.map_err(db)?;
                    Ok(placed)
                }

                async fn audit_head(&self, log: &str) -> StoreResult<Option<AuditHead>> {
                    $crate::sqlx::query("SELECT * FROM audit_logs WHERE log = $1")
                        .bind(log)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db)?
                        .map(|r| head(&r))
                        .transpose()
                }

                async fn audit_heads(&self) -> StoreResult<Vec<AuditHead>> {
                    $crate::sqlx::query("SELECT * FROM audit_logs ORDER BY log")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db)?
                        .iter()
                        .map(head)
                        .collect()
                }

                async fn audit_entries(&self, log: &str, from_seq: i64, limit: i64) -> StoreResult<Vec<AuditEntry>> {
                    $crate::sqlx::query(
                        "SELECT * FROM audit_entries WHERE log = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
                    )
                    .bind(log)
                    .bind(from_seq)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?
                    .iter()
                    .map(entry)
                    .collect()
                }

                async fn search_audit(&self, q: &AuditQuery) -> StoreResult<Vec<AuditEntry>> {
                    let mut b = Builder::new("SELECT * FROM audit_entries");
                    // SQLite's planner, without statistics, tends to walk the time index for
                    // `ORDER BY at DESC LIMIT n` and filter, which is a full scan when the filter
                    // matches little. Name the index of the most selective filter instead
                    // (PostgreSQL plans from its statistics).
                    if <$db as $crate::sqlx::Database>::NAME == "SQLite" {
                        b.push(" INDEXED BY ").push($crate::audit::sqlite_index(q));
                    }
                    b.push(" WHERE log = ");
                    b.push_bind(q.log.clone());
                    let eq = |b: &mut Builder, column: &str, v: &Option<String>| {
                        if let Some(v) = v {
                            b.push(format_args!(" AND {column} = ")).push_bind(v.clone());
                        }
                    };
                    eq(&mut b, "event", &q.event);
                    eq(&mut b, "credential_id", &q.credential_id);
                    eq(&mut b, "credential_kind", &q.credential_kind);
                    eq(&mut b, "user_id", &q.user_id);
                    eq(&mut b, "client_id", &q.client_id);
                    eq(&mut b, "tool", &q.tool);
                    // A template (it has `{…}` parameters) matches the route; anything else the
                    // concrete path (a parameterless route's path is its template). Each is one
                    // indexed equality, which an OR of both would not be.
                    if let Some(route) = &q.route {
                        let column = if route.contains('{') { " AND route = " } else { " AND path = " };
                        b.push(column).push_bind(route.clone());
                    }
                    if let Some(net) = &q.ip {
                        let (lo, hi) = ip_key_range(net);
                        b.push(" AND ip_key BETWEEN ").push_bind(lo.to_vec());
                        b.push(" AND ").push_bind(hi.to_vec());
                    }
                    if let Some((lo, hi)) = q.status {
                        b.push(" AND status BETWEEN ").push_bind(i64::from(lo));
                        b.push(" AND ").push_bind(i64::from(hi));
                    }
                    if let Some(v) = &q.param_value {
                        // The value as a quoted JSON string, with LIKE's wildcards escaped.
                        let quoted = $crate::audit::serde_json_string(v);
                        let escaped = quoted.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
                        b.push(" AND params LIKE ").push_bind(format!("%{escaped}%")).push(" ESCAPE '\\'");
                    }
                    if q.events_only {
                        b.push(" AND event NOT LIKE '%.request'");
                    }
                    match q.pii {
                        Some(true) => {
                            b.push(" AND pii_access");
                        }
                        Some(false) => {
                            b.push(" AND NOT pii_access");
                        }
                        None => {}
                    }
                    if let Some(from) = q.from {
                        b.push(" AND at >= ").push_bind(micros(from));
                    }
                    if let Some(to) = q.to {
                        b.push(" AND at <= ").push_bind(micros(to));
                    }
                    if let Some((at, seq)) = q.before {
                        b.push(" AND (at < ").push_bind(at);
                        b.push(" OR (at = ").push_bind(at);
                        b.push(" AND seq < ").push_bind(seq).push("))");
                    }
                    b.push(" ORDER BY at DESC, seq DESC LIMIT ").push_bind(q.limit);
                    b.build().fetch_all(&self.pool).await.map_err(db)?.iter().map(entry).collect()
                }

                async fn audit_seq_at(&self, log: &str, at: OffsetDateTime) -> StoreResult<Option<i64>> {
                    let row = $crate::sqlx::query("SELECT MIN(seq) AS s FROM audit_entries WHERE log = $1 AND at >= $2")
                        .bind(log)
                        .bind(micros(at))
                        .fetch_one(&self.pool)
                        .await
                        .map_err(db)?;
                    col(&row, "s")
                }

                async fn insert_audit_checkpoint(&self, c: &AuditCheckpoint) -> StoreResult<bool> {
                    let n = $crate::sqlx::query(
                        "INSERT INTO audit_checkpoints (log, size, root, head, frontier, note, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (log, size) DO NOTHING",
                    )
                    .bind(&c.log)
                    .bind(c.size)
                    .bind(c.root.to_vec())
                    .bind(c.head.to_vec())
                    .bind(c.frontier.to_bytes())
                    .bind(&c.note)
                    .bind(c.created_at.unix_timestamp())
                    .execute(&self.pool)
                    .await
                    .map_err(db)?
                    .rows_affected();
                    Ok(n == 1)
                }

                async fn audit_checkpoints(&self, log: &str) -> StoreResult<Vec<AuditCheckpoint>> {
                    $crate::sqlx::query("SELECT * FROM audit_checkpoints WHERE log = $1 ORDER BY size")
                        .bind(log)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db)?
                        .iter()
                        .map(checkpoint)
                        .collect()
                }

                async fn prune_audit(&self, log: &str, below: i64) -> StoreResult<u64> {
                    Ok($crate::sqlx::query("DELETE FROM audit_entries WHERE log = $1 AND seq < $2")
                        .bind(log)
                        .bind(below)
                        .execute(&self.pool)
                        .await
                        .map_err(db)?
                        .rows_affected())
                }
            }

            impl AuditSinkStore for $store {
                async fn insert_audit_sink(&self, s: &AuditSink) -> StoreResult<()> {
                    $crate::sqlx::query(
                        "INSERT INTO audit_sinks (id, workspace_id, url, secret_sealed, next_seq, created_at, \
                         disabled_at, failures, last_error, last_delivery_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    )
                    .bind(s.id.as_str())
                    .bind(s.workspace_id.as_str())
                    .bind(&s.url)
                    .bind(&s.secret_sealed)
                    .bind(s.cursor)
                    .bind(s.created_at.unix_timestamp())
                    .bind(s.disabled_at.map(|t| t.unix_timestamp()))
                    .bind(s.failures)
                    .bind(&s.last_error)
                    .bind(s.last_delivery_at.map(|t| t.unix_timestamp()))
                    .execute(&self.pool)
                    .await
                    .map_err(|e| $crate::map_err(e, "id"))?;
                    Ok(())
                }

                async fn audit_sink(&self, id: &AuditSinkId) -> StoreResult<Option<AuditSink>> {
                    $crate::sqlx::query("SELECT * FROM audit_sinks WHERE id = $1")
                        .bind(id.as_str())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db)?
                        .map(|r| sink(&r))
                        .transpose()
                }

                async fn list_audit_sinks(&self, ws: Option<&WorkspaceId>) -> StoreResult<Vec<AuditSink>> {
                    $crate::sqlx::query(
                        "SELECT * FROM audit_sinks WHERE ($1 IS NULL OR workspace_id = $1) ORDER BY id",
                    )
                    .bind(ws.map(|w| w.as_str().to_owned()))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?
                    .iter()
                    .map(sink)
                    .collect()
                }

                async fn lease_audit_sink(
                    &self,
                    id: &AuditSinkId,
                    holder: &str,
                    now: OffsetDateTime,
                    until: OffsetDateTime,
                ) -> StoreResult<SinkLease> {
                    let n = $crate::sqlx::query(
                        "UPDATE audit_sinks SET lease_holder = $2, lease_until = $4 WHERE id = $1 \
                         AND (lease_holder IS NULL OR lease_holder = $2 OR lease_until <= $3)",
                    )
                    .bind(id.as_str())
                    .bind(holder)
                    .bind(now.unix_timestamp())
                    .bind(until.unix_timestamp())
                    .execute(&self.pool)
                    .await
                    .map_err(db)?
                    .rows_affected();
                    Ok(if n == 1 { SinkLease::Taken } else { SinkLease::HeldElsewhere })
                }

                async fn record_sink_delivery(
                    &self,
                    id: &AuditSinkId,
                    cursor: Option<i64>,
                    error: Option<&str>,
                    now: OffsetDateTime,
                ) -> StoreResult<()> {
                    match (cursor, error) {
                        (_, Some(error)) => $crate::sqlx::query(
                            "UPDATE audit_sinks SET failures = failures + 1, last_error = $2 WHERE id = $1",
                        )
                        .bind(id.as_str())
                        .bind(error),
                        (cursor, None) => $crate::sqlx::query(
                            "UPDATE audit_sinks SET failures = 0, last_error = NULL, last_delivery_at = $3, \
                             next_seq = CASE WHEN $2 > next_seq THEN $2 ELSE next_seq END WHERE id = $1",
                        )
                        .bind(id.as_str())
                        .bind(cursor.unwrap_or(0))
                        .bind(now.unix_timestamp()),
                    }
                    .execute(&self.pool)
                    .await
                    .map_err(db)?;
                    Ok(())
                }

                async fn disable_audit_sink(&self, id: &AuditSinkId, now: OffsetDateTime) -> StoreResult<bool> {
                    Ok($crate::sqlx::query(
                        "UPDATE audit_sinks SET disabled_at = $2 WHERE id = $1 AND disabled_at IS NULL",
                    )
                    .bind(id.as_str())
                    .bind(now.unix_timestamp())
                    .execute(&self.pool)
                    .await
                    .map_err(db)?
                    .rows_affected()
                        == 1)
                }
            }
        };
    };
}
