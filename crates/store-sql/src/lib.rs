//! The SQL shared by the SQLite and PostgreSQL backends.
//!
//! # Layout
//! - [`decode`]: conversions from column values to validated domain types; a value that fails
//!   validation is reported as [`StoreError::Corrupt`], never silently accepted.
//! - [`round_trips`]: a count of statements sent, for measuring what each operation costs.
//! - [`audit`]: the audit log's appends (head-row locking), searches and webhook sinks.
//! - [`impl_sql_store!`]: the storage traits implemented once, in SQL both databases run
//!   (`$N` placeholders, `RETURNING`, `ON CONFLICT`, partial unique indexes), expanded by each
//!   backend crate for its own pool type.
//!
//! # Decisions
//! - Why a macro: sqlx's generic bounds over `Database` (encode/decode of every column type for
//!   every lifetime) make a generic implementation unreadable; a macro expanded for a concrete
//!   database keeps one copy of each statement and ordinary code around it. Each backend keeps its
//!   own migrations (DDL differs: `BLOB`/`BYTEA`), connection setup and error mapping.
//! - Times are stored as Unix seconds (`BIGINT`), scopes as space-delimited text, lists of URIs
//!   as JSON arrays: identical in both databases and easy to read in a SQL shell.

pub use portcullis_domain;
pub use portcullis_store;
pub use serde_json;
pub use sqlx;
pub use time;

use portcullis_store::StoreError;

pub mod audit;
pub mod decode;

/// Statements sent to the database by this process (each `BEGIN`/`COMMIT` counts as one), for
/// `bench/roundtrips`: a cheap relaxed counter, always on.
pub mod round_trips {
    use std::sync::atomic::{AtomicU64, Ordering};

    static STATEMENTS: AtomicU64 = AtomicU64::new(0);

    pub fn count(n: u64) {
        STATEMENTS.fetch_add(n, Ordering::Relaxed);
    }

    /// Statements so far; the difference across an operation is what it cost.
    pub fn statements() -> u64 {
        STATEMENTS.load(Ordering::Relaxed)
    }

    /// `pool.begin()`, counted as its `BEGIN` and the `COMMIT` (or `ROLLBACK`) that ends it.
    pub async fn begin<DB: sqlx::Database>(
        pool: &sqlx::Pool<DB>,
    ) -> Result<sqlx::Transaction<'static, DB>, sqlx::Error> {
        count(2);
        pool.begin().await
    }
}

/// Maps a sqlx error to a [`StoreError`]; `field` names what a uniqueness violation means.
pub fn map_err(e: sqlx::Error, field: &'static str) -> StoreError {
    match e.as_database_error() {
        Some(d) if d.is_unique_violation() => StoreError::Duplicate(field),
        Some(d) if d.is_foreign_key_violation() => StoreError::MissingReference,
        _ => StoreError::Backend(e.to_string()),
    }
}

/// Columns of each table, in the order the decoders read them.
pub mod cols {
    pub const WORKSPACE: &str = "id, slug, name, created_at";
    pub const USER: &str = "id, email, name, password_hash, created_at";
    pub const MEMBERSHIP: &str = "workspace_id, user_id, permissions, created_at, updated_at";
    pub const CLIENT: &str = "id, name, secret_hash, redirect_uris, scopes, grant_types, workspace_id, \
        created_at, refresh_overlap_seconds, previous_secret_hash, previous_secret_expires_at, revoked_at, \
        origin, metadata, registration_token_hash, registered_from, fingerprint, last_used_at, refresh_after, require_par, dpop_bound";
    pub const GRANT: &str =
        "id, user_id, client_id, workspace_id, scopes, created_at, updated_at, revoked_at";
    pub const CODE: &str = "code_hash, client_id, user_id, workspace_id, grant_id, family_id, \
        redirect_uri, redirect_uri_explicit, code_challenge, scopes, nonce, auth_time, created_at, \
        expires_at, redeemed_at, dpop_jkt";
    pub const FAMILY: &str = "id, client_id, user_id, workspace_id, grant_id, created_at, \
        expires_at, revoked_at, revoked_reason, resources";
    pub const REFRESH: &str =
        "token_hash, family_id, client_id, scopes, created_at, expires_at, consumed_at, dpop_jkt";
    pub const SIGNING_KEY: &str = "kid, alg, private_key, public_jwk, created_at, active_from, retired_at";
    pub const SESSION: &str = "token_hash, user_id, auth_time, created_at, expires_at";
    pub const PENDING: &str = "id, payload, created_at, expires_at";
}

/// Implements every storage trait for `$store` (a struct with a `pool: sqlx::Pool<$db>` field).
///
/// Transactions used here only write (never read then write), so a plain `BEGIN` cannot
/// deadlock on SQLite's lock upgrade.
#[macro_export]
macro_rules! impl_sql_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use $crate::portcullis_domain::{
                ClientId, Email, FamilyId, GrantId, TokenHash, UserId, WorkspaceId,
            };
            use $crate::portcullis_store::*;
            use $crate::sqlx::Row as _;
            use $crate::cols;
            use $crate::decode as d;
            use $crate::time::OffsetDateTime;

            type DbRow = <$db as $crate::sqlx::Database>::Row;

            fn col<'r, T>(row: &'r DbRow, name: &str) -> StoreResult<T>
            where
                T: $crate::sqlx::Decode<'r, $db> + $crate::sqlx::Type<$db>,
            {
                row.try_get::<T, _>(name)
                    .map_err(|e| StoreError::Corrupt(format!("column {name}: {e}")))
            }

            fn ts(row: &DbRow, name: &str) -> StoreResult<OffsetDateTime> {
                d::time(col::<i64>(row, name)?)
            }

            fn ts_opt(row: &DbRow, name: &str) -> StoreResult<Option<OffsetDateTime>> {
                col::<Option<i64>>(row, name)?.map(d::time).transpose()
            }

            fn workspace(row: &DbRow) -> StoreResult<Workspace> {
                Ok(Workspace {
                    id: WorkspaceId::from_string(col::<String>(row, "id")?),
                    slug: d::slug(col(row, "slug")?)?,
                    name: col(row, "name")?,
                    created_at: ts(row, "created_at")?,
                })
            }

            fn user(row: &DbRow) -> StoreResult<User> {
                Ok(User {
                    id: UserId::from_string(col::<String>(row, "id")?),
                    email: d::email(col(row, "email")?)?,
                    name: col(row, "name")?,
                    password_hash: col(row, "password_hash")?,
                    created_at: ts(row, "created_at")?,
                })
            }

            fn membership(row: &DbRow) -> StoreResult<Membership> {
                Ok(Membership {
                    workspace_id: WorkspaceId::from_string(col::<String>(row, "workspace_id")?),
                    user_id: UserId::from_string(col::<String>(row, "user_id")?),
                    permissions: d::scopes(col(row, "permissions")?)?,
                    created_at: ts(row, "created_at")?,
                    updated_at: ts(row, "updated_at")?,
                })
            }

            /// A membership selected next to a workspace or user row (its times aliased `m_…`).
            fn joined_membership(r: &DbRow) -> StoreResult<Membership> {
                Ok(Membership {
                    workspace_id: WorkspaceId::from_string(col::<String>(r, "workspace_id")?),
                    user_id: UserId::from_string(col::<String>(r, "user_id")?),
                    permissions: d::scopes(col(r, "permissions")?)?,
                    created_at: ts(r, "m_created_at")?,
                    updated_at: ts(r, "m_updated_at")?,
                })
            }

            fn client(row: &DbRow) -> StoreResult<Client> {
                Ok(Client {
                    id: ClientId::from_string(col::<String>(row, "id")?),
                    name: col(row, "name")?,
                    secret_hash: col::<Option<Vec<u8>>>(row, "secret_hash")?
                        .map(|b| d::hash(&b))
                        .transpose()?,
                    redirect_uris: d::redirect_uris(col(row, "redirect_uris")?)?,
                    scopes: d::scopes(col(row, "scopes")?)?,
                    grant_types: d::words(col(row, "grant_types")?),
                    workspace_id: col::<Option<String>>(row, "workspace_id")?
                        .map(WorkspaceId::from_string),
                    created_at: ts(row, "created_at")?,
                    refresh_overlap: $crate::time::Duration::seconds(col::<i64>(row, "refresh_overlap_seconds")?),
                    previous_secret_hash: col::<Option<Vec<u8>>>(row, "previous_secret_hash")?
                        .map(|b| d::hash(&b))
                        .transpose()?,
                    previous_secret_expires_at: ts_opt(row, "previous_secret_expires_at")?,
                    revoked_at: ts_opt(row, "revoked_at")?,
                    origin: {
                        let o = col::<String>(row, "origin")?;
                        ClientOrigin::parse(&o).ok_or_else(|| StoreError::Corrupt(format!("client origin {o:?}")))?
                    },
                    registration: match col::<Option<String>>(row, "metadata")? {
                        None => None,
                        Some(metadata) => Some(Registration {
                            metadata,
                            token_hash: col::<Option<Vec<u8>>>(row, "registration_token_hash")?
                                .map(|b| d::hash(&b))
                                .transpose()?,
                            registered_from: col(row, "registered_from")?,
                            fingerprint: col(row, "fingerprint")?,
                            refresh_after: ts_opt(row, "refresh_after")?,
                        }),
                    },
                    last_used_at: ts_opt(row, "last_used_at")?,
                    require_pushed_requests: col(row, "require_par")?,
                    dpop_bound: col(row, "dpop_bound")?,
                })
            }

            fn grant(row: &DbRow) -> StoreResult<Grant> {
                Ok(Grant {
                    id: GrantId::from_string(col::<String>(row, "id")?),
                    user_id: UserId::from_string(col::<String>(row, "user_id")?),
                    client_id: ClientId::from_string(col::<String>(row, "client_id")?),
                    workspace_id: WorkspaceId::from_string(col::<String>(row, "workspace_id")?),
                    scopes: d::scopes(col(row, "scopes")?)?,
                    created_at: ts(row, "created_at")?,
                    updated_at: ts(row, "updated_at")?,
                    revoked_at: ts_opt(row, "revoked_at")?,
                })
            }

            fn code(row: &DbRow) -> StoreResult<AuthCode> {
                Ok(AuthCode {
                    hash: d::hash(&col::<Vec<u8>>(row, "code_hash")?)?,
                    client_id: ClientId::from_string(col::<String>(row, "client_id")?),
                    user_id: UserId::from_string(col::<String>(row, "user_id")?),
                    workspace_id: WorkspaceId::from_string(col::<String>(row, "workspace_id")?),
                    grant_id: GrantId::from_string(col::<String>(row, "grant_id")?),
                    family_id: FamilyId::from_string(col::<String>(row, "family_id")?),
                    redirect_uri: col(row, "redirect_uri")?,
                    redirect_uri_explicit: col(row, "redirect_uri_explicit")?,
                    code_challenge: col(row, "code_challenge")?,
                    scopes: d::scopes(col(row, "scopes")?)?,
                    nonce: col(row, "nonce")?,
                    auth_time: ts(row, "auth_time")?,
                    created_at: ts(row, "created_at")?,
                    expires_at: ts(row, "expires_at")?,
                    redeemed_at: ts_opt(row, "redeemed_at")?,
                    dpop_jkt: col(row, "dpop_jkt")?,
                })
            }

            fn family(row: &DbRow) -> StoreResult<TokenFamily> {
                Ok(TokenFamily {
                    id: FamilyId::from_string(col::<String>(row, "id")?),
                    client_id: ClientId::from_string(col::<String>(row, "client_id")?),
                    user_id: col::<Option<String>>(row, "user_id")?.map(UserId::from_string),
                    workspace_id: WorkspaceId::from_string(col::<String>(row, "workspace_id")?),
                    grant_id: col::<Option<String>>(row, "grant_id")?.map(GrantId::from_string),
                    created_at: ts(row, "created_at")?,
                    expires_at: ts(row, "expires_at")?,
                    revoked_at: ts_opt(row, "revoked_at")?,
                    revoked_reason: col(row, "revoked_reason")?,
                    resources: d::words(col(row, "resources")?),
                })
            }

            fn refresh(row: &DbRow) -> StoreResult<RefreshToken> {
                Ok(RefreshToken {
                    hash: d::hash(&col::<Vec<u8>>(row, "token_hash")?)?,
                    family_id: FamilyId::from_string(col::<String>(row, "family_id")?),
                    client_id: ClientId::from_string(col::<String>(row, "client_id")?),
                    scopes: d::scopes(col(row, "scopes")?)?,
                    created_at: ts(row, "created_at")?,
                    expires_at: ts(row, "expires_at")?,
                    consumed_at: ts_opt(row, "consumed_at")?,
                    successor_hash: col::<Option<Vec<u8>>>(row, "successor_hash")?
                        .map(|b| d::hash(&b))
                        .transpose()?,
                    successor_sealed: col(row, "successor_sealed")?,
                    dpop_jkt: col(row, "dpop_jkt")?,
                })
            }

            fn device(row: &DbRow) -> StoreResult<DeviceCode> {
                let status = col::<String>(row, "status")?;
                let approval = match col::<Option<String>>(row, "user_id")? {
                    None => None,
                    Some(user) => Some(DeviceApproval {
                        user_id: UserId::from_string(user),
                        workspace_id: WorkspaceId::from_string(col::<String>(row, "workspace_id")?),
                        grant_id: GrantId::from_string(col::<String>(row, "grant_id")?),
                        family_id: FamilyId::from_string(col::<String>(row, "family_id")?),
                        scopes: d::scopes(col(row, "granted_scopes")?)?,
                        auth_time: ts(row, "auth_time")?,
                    }),
                };
                Ok(DeviceCode {
                    hash: d::hash(&col::<Vec<u8>>(row, "device_code_hash")?)?,
                    user_code: col(row, "user_code")?,
                    client_id: ClientId::from_string(col::<String>(row, "client_id")?),
                    scopes: d::scopes(col(row, "scopes")?)?,
                    status: DeviceStatus::parse(&status)
                        .ok_or_else(|| StoreError::Corrupt(format!("device status {status:?}")))?,
                    interval: col(row, "interval_seconds")?,
                    last_polled_at: ts_opt(row, "last_polled_at")?,
                    created_at: ts(row, "created_at")?,
                    expires_at: ts(row, "expires_at")?,
                    resources: d::words(col(row, "resources")?),
                    approval,
                })
            }

            fn signing_key(row: &DbRow) -> StoreResult<SigningKey> {
                Ok(SigningKey {
                    kid: $crate::portcullis_domain::KeyId::from_string(col::<String>(row, "kid")?),
                    alg: col(row, "alg")?,
                    private_key: col(row, "private_key")?,
                    public_jwk: col(row, "public_jwk")?,
                    created_at: ts(row, "created_at")?,
                    active_from: ts(row, "active_from")?,
                    retired_at: ts_opt(row, "retired_at")?,
                    generation: col::<Option<i64>>(row, "generation")?.unwrap_or(0),
                })
            }

            fn session(row: &DbRow) -> StoreResult<Session> {
                Ok(Session {
                    hash: d::hash(&col::<Vec<u8>>(row, "token_hash")?)?,
                    user_id: UserId::from_string(col::<String>(row, "user_id")?),
                    auth_time: ts(row, "auth_time")?,
                    created_at: ts(row, "created_at")?,
                    expires_at: ts(row, "expires_at")?,
                })
            }

            fn pending(row: &DbRow) -> StoreResult<PendingAuthorization> {
                Ok(PendingAuthorization {
                    id: col(row, "id")?,
                    payload: col(row, "payload")?,
                    created_at: ts(row, "created_at")?,
                    expires_at: ts(row, "expires_at")?,
                })
            }

            fn err(field: &'static str) -> impl Fn($crate::sqlx::Error) -> StoreError {
                move |e| $crate::map_err(e, field)
            }

            fn db(e: $crate::sqlx::Error) -> StoreError {
                $crate::map_err(e, "record")
            }

            macro_rules! sql {
                ($s:literal) => {{
                    $crate::round_trips::count(1);
                    $crate::sqlx::query($s)
                }};
            }

            impl WorkspaceStore for $store {
                async fn insert_workspace(&self, w: &Workspace) -> StoreResult<()> {
                    sql!("INSERT INTO workspaces (id, slug, name, created_at) VALUES ($1, $2, $3, $4)")
                        .bind(w.id.as_str())
                        .bind(w.slug.as_str())
                        .bind(&w.name)
                        .bind(w.created_at.unix_timestamp())
                        .execute(&self.pool)
                        .await
                        .map_err(err("slug"))?;
                    Ok(())
                }

                async fn workspace_by_slug(&self, slug: &str) -> StoreResult<Option<Workspace>> {
                    sql!("SELECT id, slug, name, created_at FROM workspaces WHERE slug = $1")
                        .bind(slug)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db)?
                        .map(|r| workspace(&r))
                        .transpose()
                }

                async fn workspace_by_id(&self, id: &WorkspaceId) -> StoreResult<Option<Workspace>> {
                    sql!("SELECT id, slug, name, created_at FROM workspaces WHERE id = $1")
                        .bind(id.as_str())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db)?
                        .map(|r| workspace(&r))
                        .transpose()
                }

                async fn list_workspaces(&self) -> StoreResult<Vec<Workspace>> {
                    sql!("SELECT id, slug, name, created_at FROM workspaces ORDER BY slug")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db)?
                        .iter()
                        .map(workspace)
                        .collect()
                }
            }

            impl UserStore for $store {
                async fn insert_user(&self, u: &User) -> StoreResult<()> {
                    sql!("INSERT INTO users (id, email, name, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)")
                        .bind(u.id.as_str())
                        .bind(u.email.as_str())
                        .bind(u.name.as_deref())
                        .bind(&u.password_hash)
                        .bind(u.created_at.unix_timestamp())
                        .execute(&self.pool)
                        .await
                        .map_err(err("email"))?;
                    Ok(())
                }

                async fn user_by_email(&self, email: &Email) -> StoreResult<Option<User>> {
                    sql!("SELECT id, email, name, password_hash, created_at FROM users WHERE email = $1")
                        .bind(email.as_str())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db)?
                        .map(|r| user(&r))
                        .transpose()
                }

                async fn user_by_id(&self, id: &UserId) -> StoreResult<Option<User>> {
                    sql!("SELECT id, email, name, password_hash, created_at FROM users WHERE id = $1")
                        .bind(id.as_str())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db)?
                        .map(|r| user(&r))
                        .transpose()
                }

                async fn list_users(&self) -> StoreResult<Vec<User>> {
                    sql!("SELECT id, email, name, password_hash, created_at FROM users ORDER BY email")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db)?
                        .iter()
                        .map(user)
                        .collect()
                }

                async fn put_membership(&self, m: &Membership) -> StoreResult<MembershipWrite> {
                    let inserted = sql!(
                        "INSERT INTO memberships (workspace_id, user_id, permissions, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (workspace_id, user_id) DO NOTHING"
                    )
                    .bind(m.workspace_id.as_str())
                    .bind(m.user_id.as_str())
                    .bind(m.permissions.to_string())
                    .bind(m.created_at.unix_timestamp())
                    .bind(m.updated_at.unix_timestamp())
                    .execute(&self.pool)
                    .await
                    .map_err(db)?
                    .rows_affected();
                    if inserted == 1 {
                        return Ok(MembershipWrite::Created);
                    }
                    sql!("UPDATE memberships SET permissions = $3, updated_at = $4 WHERE workspace_id = $1 AND user_id = $2")
                        .bind(m.workspace_id.as_str())
                        .bind(m.user_id.as_str())
                        .bind(m.permissions.to_string())
                        .bind(m.updated_at.unix_timestamp())
                        .execute(&self.pool)
                        .await
                        .map_err(db)?;
                    Ok(MembershipWrite::Updated)
                }

                async fn membership(&self, ws: &WorkspaceId, u: &UserId) -> StoreResult<Option<Membership>> {
                    sql!("SELECT workspace_id, user_id, permissions, created_at, updated_at FROM memberships WHERE workspace_id = $1 AND user_id = $2")
                        .bind(ws.as_str())
                        .bind(u.as_str())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db)?
                        .map(|r| membership(&r))
                        .transpose()
                }

                async fn remove_membership(&self, ws: &WorkspaceId, u: &UserId) -> StoreResult<bool> {
                    let n = sql!("DELETE FROM memberships WHERE workspace_id = $1 AND user_id = $2")
                        .bind(ws.as_str())
                        .bind(u.as_str())
                        .execute(&self.pool)
                        .await
                        .map_err(db)?
                        .rows_affected();
                    Ok(n > 0)
                }

                async fn memberships_of_user(&self, u: &UserId) -> StoreResult<Vec<(Workspace, Membership)>> {
                    sql!(
                        "SELECT w.id, w.slug, w.name, w.created_at, m.workspace_id, m.user_id, m.permissions, \
                         m.created_at AS m_created_at, m.updated_at AS m_updated_at \
                         FROM memberships m JOIN workspaces w ON w.id = m.workspace_id \
                         WHERE m.user_id = $1 ORDER BY w.slug"
                    )
                    .bind(u.as_str())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?
                    .iter()
                    .map(|r| Ok((workspace(r)?, joined_membership(r)?)))
                    .collect()
                }

                async fn members_of_workspace(&self, ws: &WorkspaceId) -> StoreResult<Vec<(User, Membership)>> {
                    sql!(
                        "SELECT u.id, u.email, u.name, u.password_hash, u.created_at, m.workspace_id, m.user_id, \
                         m.permissions, m.created_at AS m_created_at, m.updated_at AS m_updated_at \
                         FROM memberships m JOIN users u ON u.id = m.user_id \
                         WHERE m.workspace_id = $1 ORDER BY u.email"
                    )
                    .bind(ws.as_str())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?
                    .iter()
                    .map(|r| Ok((user(r)?, joined_membership(r)?)))
                    .collect()
                }
            }

            impl ClientStore for $store {
                async fn insert_client(&self, c: &Client) -> StoreResult<()> {
                    sql!(
                        "INSERT INTO clients (id, name, secret_hash, redirect_uris, scopes, grant_types, workspace_id, created_at, \
                         refresh_overlap_seconds, previous_secret_hash, previous_secret_expires_at, revoked_at, origin, metadata, \
                         registration_token_hash, registered_from, fingerprint, last_used_at, refresh_after, require_par, dpop_bound) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)"
                    )
                    .bind(c.id.as_str())
                    .bind(&c.name)
                    .bind(c.secret_hash.as_ref().map(|h| h.as_bytes().to_vec()))
                    .bind(d::redirect_uris_json(&c.redirect_uris))
                    .bind(c.scopes.to_string())
                    .bind(c.grant_types.join(" "))
                    .bind(c.workspace_id.as_ref().map(|w| w.as_str()))
                    .bind(c.created_at.unix_timestamp())
                    .bind(c.refresh_overlap.whole_seconds())
                    .bind(c.previous_secret_hash.as_ref().map(|h| h.as_bytes().to_vec()))
                    .bind(c.previous_secret_expires_at.map(|t| t.unix_timestamp()))
                    .bind(c.revoked_at.map(|t| t.unix_timestamp()))
                    .bind(c.origin.as_str())
                    .bind(c.registration.as_ref().map(|r| r.metadata.clone()))
                    .bind(c.registration.as_ref().and_then(|r| r.token_hash.as_ref()).map(|h| h.as_bytes().to_vec()))
                    .bind(c.registration.as_ref().and_then(|r| r.registered_from.clone()))
                    .bind(c.registration.as_ref().and_then(|r| r.fingerprint.clone()))
                    .bind(c.last_used_at.map(|t| t.unix_timestamp()))
                    .bind(c.registration.as_ref().and_then(|r| r.refresh_after).map(|t| t.unix_timestamp()))
                    .bind(c.require_pushed_requests)
                    .bind(c.dpop_bound)
                    .execute(&self.pool)
                    .await
                    .map_err(err("client_id"))?;
                    Ok(())
                }

                async fn client_by_fingerprint(&self, fingerprint: &str, since: OffsetDateTime) -> StoreResult<Option<Client>> {
                    sql!("SELECT id, name, secret_hash, redirect_uris, scopes, grant_types, workspace_id, created_at, \
                         refresh_overlap_seconds, previous_secret_hash, previous_secret_expires_at, revoked_at, origin, metadata, \
                         registration_token_hash, registered_from, fingerprint, last_used_at, refresh_after, require_par, dpop_bound FROM clients \
                         WHERE fingerprint = $1 AND created_at >= $2 AND revoked_at IS NULL ORDER BY created_at DESC LIMIT 1")
                        .bind(fingerprint)
                        .bind(since.unix_timestamp())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db)?
                        .map(|r| client(&r))
                        .transpose()
                }

                async fn update_registered_client(&self, c: &Client) -> StoreResult<bool> {
                    let n = sql!(
                        "UPDATE clients SET name = $2, redirect_uris = $3, scopes = $4, grant_types = $5, metadata = $6, \
                         registration_token_hash = $7, refresh_after = $8, require_par = $9, dpop_bound = $10 \
                         WHERE id = $1 AND revoked_at IS NULL"
                    )
                    .bind(c.id.as_str())
                    .bind(&c.name)
                    .bind(d::redirect_uris_json(&c.redirect_uris))
                    .bind(c.scopes.to_string())
                    .bind(c.grant_types.join(" "))
                    .bind(c.registration.as_ref().map(|r| r.metadata.clone()))
                    .bind(c.registration.as_ref().and_then(|r| r.token_hash.as_ref()).map(|h| h.as_bytes().to_vec()))
                    .bind(c.registration.as_ref().and_then(|r| r.refresh_after).map(|t| t.unix_timestamp()))
                    .bind(c.require_pushed_requests)
                    .bind(c.dpop_bound)
                    .execute(&self.pool)
                    .await
                    .map_err(db)?
                    .rows_affected();
                    Ok(n > 0)
                }

                async fn touch_client(&self, id: &ClientId, now: OffsetDateTime) -> StoreResult<()> {
                    sql!("UPDATE clients SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)")
                        .bind(id.as_str())
                        .bind(now.unix_timestamp())
                        .bind(now.unix_timestamp() - 3600)
                        .execute(&self.pool)
                        .await
                        .map_err(db)?;
                    Ok(())
                }

                async fn reclaim_unused_clients(&self, cutoff: OffsetDateTime) -> StoreResult<u64> {
                    let n = sql!(
                        "DELETE FROM clients WHERE origin <> 'admin' AND last_used_at IS NULL AND created_at < $1 \
                         AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.client_id = clients.id) \
                         AND NOT EXISTS (SELECT 1 FROM token_families f WHERE f.client_id = clients.id) \
                         AND NOT EXISTS (SELECT 1 FROM device_codes dc WHERE dc.client_id = clients.id)"
                    )
                    .bind(cutoff.unix_timestamp())
                    .execute(&self.pool)
                    .await
                    .map_err(db)?
                    .rows_affected();
                    Ok(n)
                }

                async fn rotate_client_secret(
                    &self,
                    id: &ClientId,
                    new_hash: &TokenHash,
                    previous_expires_at: OffsetDateTime,
                ) -> StoreResult<bool> {
                    let n = sql!(
                        "UPDATE clients SET previous_secret_hash = secret_hash, previous_secret_expires_at = $3, secret_hash = $2 \
                         WHERE id = $1 AND secret_hash IS NOT NULL AND revoked_at IS NULL"
                    )
                    .bind(id.as_str())
                    .bind(new_hash.as_bytes().to_vec())
                    .bind(previous_expires_at.unix_timestamp())
                    .execute(&self.pool)
                    .await
                    .map_err(db)?
                    .rows_affected();
                    Ok(n > 0)
                }

                async fn revoke_client(&self, id: &ClientId, now: OffsetDateTime) -> StoreResult<bool> {
                    let n = sql!("UPDATE clients SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                        .bind(id.as_str())
                        .bind(now.unix_timestamp())
                        .execute(&self.pool)
                        .await
                        .map_err(db)?
                        .rows_affected();
                    Ok(n > 0)
                }

                async fn client_by_id(&self, id: &ClientId) -> StoreResult<Option<Client>> {
                    sql!("SELECT id, name, secret_hash, redirect_uris, scopes, grant_types, workspace_id, created_at, \
                         refresh_overlap_seconds, previous_secret_hash, previous_secret_expires_at, revoked_at, origin, metadata, \
                         registration_token_hash, registered_from, fingerprint, last_used_at, refresh_after, require_par, dpop_bound FROM clients WHERE id = $1")
                        .bind(id.as_str())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db)?
                        .map(|r| client(&r))
                        .transpose()
                }

                async fn list_clients(&self) -> StoreResult<Vec<Client>> {
                    sql!("SELECT id, name, secret_hash, redirect_uris, scopes, grant_types, workspace_id, created_at, \
                         refresh_overlap_seconds, previous_secret_hash, previous_secret_expires_at, revoked_at, origin, metadata, \
                         registration_token_hash, registered_from, fingerprint, last_used_at, refresh_after, require_par, dpop_bound FROM clients ORDER BY created_at, id")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db)?
                        .iter()
                        .map(client)
                        .collect()
                }
            }

            impl GrantStore for $store {
                async fn upsert_grant(&self, g: &Grant) -> StoreResult<Grant> {
                    let row = sql!(
                        "INSERT INTO grants (id, user_id, client_id, workspace_id, scopes, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) \
                         ON CONFLICT (user_id, client_id, workspace_id) WHERE revoked_at IS NULL \
                         DO UPDATE SET scopes = excluded.scopes, updated_at = excluded.updated_at \
                         RETURNING id, user_id, client_id, workspace_id, scopes, created_at, updated_at, revoked_at"
                    )
                    .bind(g.id.as_str())
                    .bind(g.user_id.as_str())
                    .bind(g.client_id.as_str())
                    .bind(g.workspace_id.as_str())
                    .bind(g.scopes.to_string())
                    .bind(g.created_at.unix_timestamp())
                    .bind(g.updated_at.unix_timestamp())
                    .fetch_one(&self.pool)
                    .await
                    .map_err(err("grant"))?;
                    grant(&row)
                }

                async fn grant_by_id(&self, id: &GrantId) -> StoreResult<Option<Grant>> {
                    sql!("SELECT id, user_id, client_id, workspace_id, scopes, created_at, updated_at, revoked_at FROM grants WHERE id = $1")
                        .bind(id.as_str())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db)?
                        .map(|r| grant(&r))
                        .transpose()
                }

                async fn active_grants(&self, u: &UserId, c: &ClientId) -> StoreResult<Vec<Grant>> {
                    sql!(
                        "SELECT id, user_id, client_id, workspace_id, scopes, created_at, updated_at, revoked_at FROM grants \
                         WHERE user_id = $1 AND client_id = $2 AND revoked_at IS NULL ORDER BY created_at, id"
                    )
                    .bind(u.as_str())
                    .bind(c.as_str())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?
                    .iter()
                    .map(grant)
                    .collect()
                }

                async fn list_grants(&self, f: &GrantFilter) -> StoreResult<Vec<Grant>> {
                    // NULL parameters mean "any": one statement for every filter combination.
                    sql!(
                        "SELECT id, user_id, client_id, workspace_id, scopes, created_at, updated_at, revoked_at FROM grants \
                         WHERE ($1 IS NULL OR workspace_id = $1) AND ($2 IS NULL OR client_id = $2) \
                         AND ($3 IS NULL OR user_id = $3) AND ($4 OR revoked_at IS NULL) \
                         ORDER BY created_at DESC, id DESC"
                    )
                    .bind(f.workspace_id.as_ref().map(|w| w.as_str().to_owned()))
                    .bind(f.client_id.as_ref().map(|c| c.as_str().to_owned()))
                    .bind(f.user_id.as_ref().map(|u| u.as_str().to_owned()))
                    .bind(f.include_revoked)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?
                    .iter()
                    .map(grant)
                    .collect()
                }

                async fn revoke_grant(&self, id: &GrantId, now: OffsetDateTime) -> StoreResult<bool> {
                    let mut tx = $crate::round_trips::begin(&self.pool).await.map_err(db)?;
                    let n = sql!("UPDATE grants SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                        .bind(id.as_str())
                        .bind(now.unix_timestamp())
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?
                        .rows_affected();
                    sql!(
                        "UPDATE token_families SET revoked_at = $2, revoked_reason = 'grant_revoked' \
                         WHERE grant_id = $1 AND revoked_at IS NULL"
                    )
                    .bind(id.as_str())
                    .bind(now.unix_timestamp())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                    tx.commit().await.map_err(db)?;
                    Ok(n > 0)
                }
            }

            impl AuthorizationStore for $store {
                async fn insert_pending(&self, p: &PendingAuthorization) -> StoreResult<()> {
                    sql!("INSERT INTO pending_authorizations (id, payload, created_at, expires_at) VALUES ($1, $2, $3, $4)")
                        .bind(&p.id)
                        .bind(&p.payload)
                        .bind(p.created_at.unix_timestamp())
                        .bind(p.expires_at.unix_timestamp())
                        .execute(&self.pool)
                        .await
                        .map_err(err("pending authorization"))?;
                    Ok(())
                }

                async fn pending(&self, id: &str, now: OffsetDateTime) -> StoreResult<Option<PendingAuthorization>> {
                    sql!("SELECT id, payload, created_at, expires_at FROM pending_authorizations WHERE id = $1 AND expires_at > $2")
                        .bind(id)
                        .bind(now.unix_timestamp())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db)?
                        .map(|r| pending(&r))
                        .transpose()
                }

                async fn take_pending(&self, id: &str, now: OffsetDateTime) -> StoreResult<Option<PendingAuthorization>> {
                    sql!("DELETE FROM pending_authorizations WHERE id = $1 AND expires_at > $2 RETURNING id, payload, created_at, expires_at")
                        .bind(id)
                        .bind(now.unix_timestamp())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db)?
                        .map(|r| pending(&r))
                        .transpose()
                }

                async fn insert_code(&self, c: &AuthCode, f: &TokenFamily) -> StoreResult<()> {
                    // Two statements, no transaction: the code refers to the family, so the
                    // family goes first, and a family left without its code (the second insert
                    // failed) is removed below or, failing that, swept; it holds no token.
                    sql!(
                        "INSERT INTO token_families (id, client_id, user_id, workspace_id, grant_id, created_at, expires_at, resources) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                    )
                    .bind(f.id.as_str())
                    .bind(f.client_id.as_str())
                    .bind(f.user_id.as_ref().map(|u| u.as_str()))
                    .bind(f.workspace_id.as_str())
                    .bind(f.grant_id.as_ref().map(|g| g.as_str()))
                    .bind(f.created_at.unix_timestamp())
                    .bind(f.expires_at.unix_timestamp())
                    .bind(f.resources.join(" "))
                    .execute(&self.pool)
                    .await
                    .map_err(err("family"))?;
                    let inserted = sql!(
                        "INSERT INTO authorization_codes (code_hash, client_id, user_id, workspace_id, grant_id, family_id, \
                         redirect_uri, redirect_uri_explicit, code_challenge, scopes, nonce, auth_time, created_at, expires_at, dpop_jkt) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
                    )
                    .bind(c.hash.as_bytes().to_vec())
                    .bind(c.client_id.as_str())
                    .bind(c.user_id.as_str())
                    .bind(c.workspace_id.as_str())
                    .bind(c.grant_id.as_str())
                    .bind(c.family_id.as_str())
                    .bind(&c.redirect_uri)
                    .bind(c.redirect_uri_explicit)
                    .bind(&c.code_challenge)
                    .bind(c.scopes.to_string())
                    .bind(c.nonce.as_deref())
                    .bind(c.auth_time.unix_timestamp())
                    .bind(c.created_at.unix_timestamp())
                    .bind(c.expires_at.unix_timestamp())
                    .bind(c.dpop_jkt.as_deref())
                    .execute(&self.pool)
                    .await
                    .map_err(err("code"));
                    if let Err(e) = inserted {
                        let _ = sql!("DELETE FROM token_families WHERE id = $1")
                            .bind(f.id.as_str())
                            .execute(&self.pool)
                            .await;
                        return Err(e);
                    }
                    Ok(())
                }

                async fn code_by_hash(&self, h: &TokenHash) -> StoreResult<Option<AuthCode>> {
                    sql!(
                        "SELECT code_hash, client_id, user_id, workspace_id, grant_id, family_id, redirect_uri, \
                         redirect_uri_explicit, code_challenge, scopes, nonce, auth_time, created_at, expires_at, redeemed_at, dpop_jkt \
                         FROM authorization_codes WHERE code_hash = $1"
                    )
                    .bind(h.as_bytes().to_vec())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)?
                    .map(|r| code(&r))
                    .transpose()
                }

                async fn redeem_code(
                    &self,
                    h: &TokenHash,
                    now: OffsetDateTime,
                    check: &CodeCheck,
                ) -> StoreResult<CodeRedemption> {
                    let won = sql!(
                        "UPDATE authorization_codes SET redeemed_at = $2 WHERE code_hash = $1 AND redeemed_at IS NULL \
                         AND expires_at > $2 AND client_id = $3 AND code_challenge = $4 \
                         AND (redirect_uri = $5 OR ($5 IS NULL AND redirect_uri_explicit = $6)) \
                         AND (dpop_jkt IS NULL OR dpop_jkt = $7) \
                         RETURNING code_hash, client_id, user_id, workspace_id, grant_id, family_id, redirect_uri, \
                         redirect_uri_explicit, code_challenge, scopes, nonce, auth_time, created_at, expires_at, redeemed_at, dpop_jkt"
                    )
                    .bind(h.as_bytes().to_vec())
                    .bind(now.unix_timestamp())
                    .bind(check.client_id.as_str())
                    .bind(&check.code_challenge)
                    .bind(check.redirect_uri.as_deref())
                    .bind(false)
                    .bind(check.dpop_jkt.as_deref())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)?;
                    if let Some(row) = won {
                        return Ok(CodeRedemption::Redeemed(Box::new(code(&row)?)));
                    }
                    let found = sql!("SELECT family_id, redeemed_at FROM authorization_codes WHERE code_hash = $1")
                        .bind(h.as_bytes().to_vec())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db)?;
                    Ok(match found {
                        Some(r) if ts_opt(&r, "redeemed_at")?.is_some() => CodeRedemption::AlreadyRedeemed {
                            family: FamilyId::from_string(col::<String>(&r, "family_id")?),
                        },
                        Some(_) => CodeRedemption::Refused,
                        None => CodeRedemption::NotFound,
                    })
                }

                async fn family_state(&self, id: &FamilyId) -> StoreResult<Option<FamilyState>> {
                    let row = sql!(
                        "SELECT f.id, f.client_id, f.user_id, f.workspace_id, f.grant_id, f.created_at, f.expires_at, \
                         f.revoked_at, f.revoked_reason, f.resources, \
                         g.id AS g_id, g.revoked_at AS g_revoked_at, \
                         u.id AS u_id, u.email AS u_email, u.name AS u_name, u.password_hash AS u_password_hash, \
                         u.created_at AS u_created_at, m.permissions AS m_permissions \
                         FROM token_families f \
                         LEFT JOIN grants g ON g.id = f.grant_id \
                         LEFT JOIN users u ON u.id = f.user_id \
                         LEFT JOIN memberships m ON m.workspace_id = f.workspace_id AND m.user_id = f.user_id \
                         WHERE f.id = $1"
                    )
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)?;
                    let Some(r) = row else { return Ok(None) };
                    let user = match col::<Option<String>>(&r, "u_id")? {
                        Some(id) => Some(User {
                            id: UserId::from_string(id),
                            email: d::email(col(&r, "u_email")?)?,
                            name: col(&r, "u_name")?,
                            password_hash: col(&r, "u_password_hash")?,
                            created_at: ts(&r, "u_created_at")?,
                        }),
                        None => None,
                    };
                    Ok(Some(FamilyState {
                        family: family(&r)?,
                        grant_active: match col::<Option<String>>(&r, "g_id")? {
                            Some(_) => Some(ts_opt(&r, "g_revoked_at")?.is_none()),
                            None => None,
                        },
                        user,
                        permissions: col::<Option<String>>(&r, "m_permissions")?.map(d::scopes).transpose()?,
                    }))
                }
            }

            impl TokenStore for $store {
                async fn family(&self, id: &FamilyId) -> StoreResult<Option<TokenFamily>> {
                    sql!(
                        "SELECT id, client_id, user_id, workspace_id, grant_id, created_at, expires_at, revoked_at, revoked_reason, \
                         resources FROM token_families WHERE id = $1"
                    )
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)?
                    .map(|r| family(&r))
                    .transpose()
                }

                async fn revoke_family(&self, id: &FamilyId, reason: &str, now: OffsetDateTime) -> StoreResult<bool> {
                    let n = sql!("UPDATE token_families SET revoked_at = $2, revoked_reason = $3 WHERE id = $1 AND revoked_at IS NULL")
                        .bind(id.as_str())
                        .bind(now.unix_timestamp())
                        .bind(reason)
                        .execute(&self.pool)
                        .await
                        .map_err(db)?
                        .rows_affected();
                    Ok(n > 0)
                }

                async fn insert_refresh_token(&self, t: &RefreshToken) -> StoreResult<()> {
                    sql!(
                        "INSERT INTO refresh_tokens (token_hash, family_id, client_id, scopes, created_at, expires_at, dpop_jkt) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7)"
                    )
                    .bind(t.hash.as_bytes().to_vec())
                    .bind(t.family_id.as_str())
                    .bind(t.client_id.as_str())
                    .bind(t.scopes.to_string())
                    .bind(t.created_at.unix_timestamp())
                    .bind(t.expires_at.unix_timestamp())
                    .bind(t.dpop_jkt.as_deref())
                    .execute(&self.pool)
                    .await
                    .map_err(err("refresh token"))?;
                    Ok(())
                }

                async fn refresh_token(&self, h: &TokenHash) -> StoreResult<Option<RefreshToken>> {
                    sql!(
                        "SELECT token_hash, family_id, client_id, scopes, created_at, expires_at, consumed_at, \
                         successor_hash, successor_sealed, dpop_jkt FROM refresh_tokens WHERE token_hash = $1"
                    )
                    .bind(h.as_bytes().to_vec())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)?
                    .map(|r| refresh(&r))
                    .transpose()
                }

                async fn rotate_refresh(
                    &self,
                    presented: &TokenHash,
                    now: OffsetDateTime,
                    next: &RefreshToken,
                    sealed: Option<&str>,
                ) -> StoreResult<RefreshRotation> {
                    let mut tx = $crate::round_trips::begin(&self.pool).await.map_err(db)?;
                    let won = sql!(
                        "UPDATE refresh_tokens SET consumed_at = $2, successor_hash = $3, successor_sealed = $4 \
                         WHERE token_hash = $1 AND consumed_at IS NULL"
                    )
                    .bind(presented.as_bytes().to_vec())
                    .bind(now.unix_timestamp())
                    .bind(next.hash.as_bytes().to_vec())
                    .bind(sealed)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?
                    .rows_affected()
                        == 1;
                    if won {
                        sql!(
                            "INSERT INTO refresh_tokens (token_hash, family_id, client_id, scopes, created_at, expires_at, dpop_jkt) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7)"
                        )
                        .bind(next.hash.as_bytes().to_vec())
                        .bind(next.family_id.as_str())
                        .bind(next.client_id.as_str())
                        .bind(next.scopes.to_string())
                        .bind(next.created_at.unix_timestamp())
                        .bind(next.expires_at.unix_timestamp())
                        .bind(next.dpop_jkt.as_deref())
                        .execute(&mut *tx)
                        .await
                        .map_err(err("refresh token"))?;
                        tx.commit().await.map_err(db)?;
                        return Ok(RefreshRotation::Rotated);
                    }
                    tx.rollback().await.map_err(db)?;
                    Ok(match self.refresh_token(presented).await? {
                        Some(t) => RefreshRotation::AlreadyConsumed(Box::new(t)),
                        None => RefreshRotation::NotFound,
                    })
                }

                async fn revoke_access_token(
                    &self,
                    jti: &str,
                    client: &ClientId,
                    expires_at: OffsetDateTime,
                    now: OffsetDateTime,
                ) -> StoreResult<()> {
                    sql!(
                        "INSERT INTO revoked_access_tokens (jti, client_id, revoked_at, expires_at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (jti) DO NOTHING"
                    )
                    .bind(jti)
                    .bind(client.as_str())
                    .bind(now.unix_timestamp())
                    .bind(expires_at.unix_timestamp())
                    .execute(&self.pool)
                    .await
                    .map_err(db)?;
                    Ok(())
                }

                async fn access_token_revoked(&self, jti: &str) -> StoreResult<bool> {
                    let row = sql!("SELECT 1 AS one FROM revoked_access_tokens WHERE jti = $1")
                        .bind(jti)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db)?;
                    Ok(row.is_some())
                }
            }

            impl DeviceStore for $store {
                async fn insert_device_code(&self, dc: &DeviceCode) -> StoreResult<()> {
                    sql!(
                        "INSERT INTO device_codes (device_code_hash, user_code, client_id, scopes, status, interval_seconds, \
                         created_at, expires_at, resources) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                    )
                    .bind(dc.hash.as_bytes().to_vec())
                    .bind(&dc.user_code)
                    .bind(dc.client_id.as_str())
                    .bind(dc.scopes.to_string())
                    .bind(dc.status.as_str())
                    .bind(dc.interval)
                    .bind(dc.created_at.unix_timestamp())
                    .bind(dc.expires_at.unix_timestamp())
                    .bind(dc.resources.join(" "))
                    .execute(&self.pool)
                    .await
                    .map_err(err("user_code"))?;
                    Ok(())
                }

                async fn pending_device_by_user_code(&self, user_code: &str, now: OffsetDateTime) -> StoreResult<Option<DeviceCode>> {
                    sql!(
                        "SELECT device_code_hash, user_code, client_id, scopes, status, interval_seconds, last_polled_at, \
                         created_at, expires_at, user_id, workspace_id, grant_id, family_id, granted_scopes, auth_time, decided_at, resources \
                         FROM device_codes WHERE user_code = $1 AND status = 'pending' AND expires_at > $2"
                    )
                    .bind(user_code)
                    .bind(now.unix_timestamp())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)?
                    .map(|r| device(&r))
                    .transpose()
                }

                async fn poll_device(&self, h: &TokenHash, now: OffsetDateTime) -> StoreResult<Option<(DeviceCode, bool)>> {
                    // Right-hand sides read the row as it was before this update, so the
                    // too-fast test compares with the previous poll.
                    let row = sql!(
                        "UPDATE device_codes SET \
                           poll_too_fast = (last_polled_at IS NOT NULL AND $2 - last_polled_at < interval_seconds), \
                           interval_seconds = CASE WHEN last_polled_at IS NOT NULL AND $2 - last_polled_at < interval_seconds \
                                              THEN interval_seconds + 5 ELSE interval_seconds END, \
                           last_polled_at = $2 \
                         WHERE device_code_hash = $1 \
                         RETURNING device_code_hash, user_code, client_id, scopes, status, interval_seconds, last_polled_at, \
                           created_at, expires_at, user_id, workspace_id, grant_id, family_id, granted_scopes, auth_time, \
                           decided_at, resources, poll_too_fast"
                    )
                    .bind(h.as_bytes().to_vec())
                    .bind(now.unix_timestamp())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)?;
                    let Some(row) = row else { return Ok(None) };
                    Ok(Some((device(&row)?, col::<bool>(&row, "poll_too_fast")?)))
                }

                async fn approve_device(
                    &self,
                    user_code: &str,
                    a: &DeviceApproval,
                    f: &TokenFamily,
                    now: OffsetDateTime,
                ) -> StoreResult<bool> {
                    let mut tx = $crate::round_trips::begin(&self.pool).await.map_err(db)?;
                    sql!(
                        "INSERT INTO token_families (id, client_id, user_id, workspace_id, grant_id, created_at, expires_at, resources) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                    )
                    .bind(f.id.as_str())
                    .bind(f.client_id.as_str())
                    .bind(f.user_id.as_ref().map(|u| u.as_str()))
                    .bind(f.workspace_id.as_str())
                    .bind(f.grant_id.as_ref().map(|g| g.as_str()))
                    .bind(f.created_at.unix_timestamp())
                    .bind(f.expires_at.unix_timestamp())
                    .bind(f.resources.join(" "))
                    .execute(&mut *tx)
                    .await
                    .map_err(err("family"))?;
                    let n = sql!(
                        "UPDATE device_codes SET status = 'approved', user_id = $2, workspace_id = $3, grant_id = $4, \
                         family_id = $5, granted_scopes = $6, auth_time = $7, decided_at = $8 \
                         WHERE user_code = $1 AND status = 'pending' AND expires_at > $8"
                    )
                    .bind(user_code)
                    .bind(a.user_id.as_str())
                    .bind(a.workspace_id.as_str())
                    .bind(a.grant_id.as_str())
                    .bind(a.family_id.as_str())
                    .bind(a.scopes.to_string())
                    .bind(a.auth_time.unix_timestamp())
                    .bind(now.unix_timestamp())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?
                    .rows_affected();
                    if n == 1 {
                        tx.commit().await.map_err(db)?;
                        Ok(true)
                    } else {
                        tx.rollback().await.map_err(db)?;
                        Ok(false)
                    }
                }

                async fn deny_device(&self, user_code: &str, now: OffsetDateTime) -> StoreResult<bool> {
                    let n = sql!(
                        "UPDATE device_codes SET status = 'denied', decided_at = $2 \
                         WHERE user_code = $1 AND status = 'pending' AND expires_at > $2"
                    )
                    .bind(user_code)
                    .bind(now.unix_timestamp())
                    .execute(&self.pool)
                    .await
                    .map_err(db)?
                    .rows_affected();
                    Ok(n == 1)
                }

                async fn consume_device(&self, h: &TokenHash, _now: OffsetDateTime) -> StoreResult<bool> {
                    let n = sql!("UPDATE device_codes SET status = 'consumed' WHERE device_code_hash = $1 AND status = 'approved'")
                        .bind(h.as_bytes().to_vec())
                        .execute(&self.pool)
                        .await
                        .map_err(db)?
                        .rows_affected();
                    Ok(n == 1)
                }

                async fn record_user_code_failure(&self, u: &UserId, now: OffsetDateTime) -> StoreResult<()> {
                    sql!("INSERT INTO user_code_failures (user_id, at) VALUES ($1, $2)")
                        .bind(u.as_str())
                        .bind(now.unix_timestamp())
                        .execute(&self.pool)
                        .await
                        .map_err(db)?;
                    Ok(())
                }

                async fn user_code_failures_since(&self, u: &UserId, since: OffsetDateTime) -> StoreResult<i64> {
                    let row = sql!("SELECT COUNT(*) AS n FROM user_code_failures WHERE user_id = $1 AND at >= $2")
                        .bind(u.as_str())
                        .bind(since.unix_timestamp())
                        .fetch_one(&self.pool)
                        .await
                        .map_err(db)?;
                    col::<i64>(&row, "n")
                }
            }

            impl KeyStore for $store {
                async fn insert_signing_key(&self, k: &SigningKey) -> StoreResult<()> {
                    sql!(
                        "INSERT INTO signing_keys (kid, alg, private_key, public_jwk, created_at, active_from, retired_at, generation) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                    )
                    .bind(k.kid.as_str())
                    .bind(&k.alg)
                    .bind(&k.private_key)
                    .bind(&k.public_jwk)
                    .bind(k.created_at.unix_timestamp())
                    .bind(k.active_from.unix_timestamp())
                    .bind(k.retired_at.map(|t| t.unix_timestamp()))
                    .bind(k.generation)
                    .execute(&self.pool)
                    .await
                    .map_err(err("kid"))?;
                    Ok(())
                }

                async fn signing_keys(&self) -> StoreResult<Vec<SigningKey>> {
                    sql!(
                        "SELECT kid, alg, private_key, public_jwk, created_at, active_from, retired_at, generation \
                         FROM signing_keys ORDER BY created_at DESC, kid DESC"
                    )
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?
                    .iter()
                    .map(signing_key)
                    .collect()
                }

                async fn rotate_signing_key(&self, next: &SigningKey, retire_at: OffsetDateTime) -> StoreResult<()> {
                    // The insert comes first: if another replica added this generation, it fails
                    // before any key is scheduled to retire.
                    let mut tx = $crate::round_trips::begin(&self.pool).await.map_err(db)?;
                    sql!(
                        "INSERT INTO signing_keys (kid, alg, private_key, public_jwk, created_at, active_from, retired_at, generation) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                    )
                    .bind(next.kid.as_str())
                    .bind(&next.alg)
                    .bind(&next.private_key)
                    .bind(&next.public_jwk)
                    .bind(next.created_at.unix_timestamp())
                    .bind(next.active_from.unix_timestamp())
                    .bind(next.retired_at.map(|t| t.unix_timestamp()))
                    .bind(next.generation)
                    .execute(&mut *tx)
                    .await
                    .map_err(err("generation"))?;
                    sql!("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL AND kid <> $2")
                        .bind(retire_at.unix_timestamp())
                        .bind(next.kid.as_str())
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                    tx.commit().await.map_err(db)
                }

                async fn server_secret(&self, name: &str, candidate: &str, now: OffsetDateTime) -> StoreResult<String> {
                    sql!("INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
                        .bind(name)
                        .bind(candidate)
                        .bind(now.unix_timestamp())
                        .execute(&self.pool)
                        .await
                        .map_err(db)?;
                    let row = sql!("SELECT value FROM server_secrets WHERE name = $1")
                        .bind(name)
                        .fetch_one(&self.pool)
                        .await
                        .map_err(db)?;
                    col(&row, "value")
                }
            }

            impl SessionStore for $store {
                async fn insert_session(&self, s: &Session) -> StoreResult<()> {
                    sql!("INSERT INTO sessions (token_hash, user_id, auth_time, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
                        .bind(s.hash.as_bytes().to_vec())
                        .bind(s.user_id.as_str())
                        .bind(s.auth_time.unix_timestamp())
                        .bind(s.created_at.unix_timestamp())
                        .bind(s.expires_at.unix_timestamp())
                        .execute(&self.pool)
                        .await
                        .map_err(err("session"))?;
                    Ok(())
                }

                async fn session(&self, h: &TokenHash, now: OffsetDateTime) -> StoreResult<Option<Session>> {
                    sql!("SELECT token_hash, user_id, auth_time, created_at, expires_at FROM sessions WHERE token_hash = $1 AND expires_at > $2")
                        .bind(h.as_bytes().to_vec())
                        .bind(now.unix_timestamp())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db)?
                        .map(|r| session(&r))
                        .transpose()
                }

                async fn delete_session(&self, h: &TokenHash) -> StoreResult<()> {
                    sql!("DELETE FROM sessions WHERE token_hash = $1")
                        .bind(h.as_bytes().to_vec())
                        .execute(&self.pool)
                        .await
                        .map_err(db)?;
                    Ok(())
                }
            }

            fn api_key(row: &DbRow) -> StoreResult<ApiKey> {
                Ok(ApiKey {
                    id: $crate::portcullis_domain::ApiKeyId::from_string(col::<String>(row, "id")?),
                    workspace_id: WorkspaceId::from_string(col::<String>(row, "workspace_id")?),
                    name: col(row, "name")?,
                    description: col(row, "description")?,
                    metadata: col(row, "metadata")?,
                    scopes: d::scopes(col(row, "scopes")?)?,
                    allowed_cidrs: d::cidrs(col(row, "allowed_cidrs")?)?,
                    rate_limit: d::rate_limit(col(row, "rate_limit")?)?,
                    environment: d::environment(col(row, "environment")?)?,
                    prefix: col(row, "prefix")?,
                    secret_hash: d::hash(&col::<Vec<u8>>(row, "secret_hash")?)?,
                    previous_secret_hash: col::<Option<Vec<u8>>>(row, "previous_secret_hash")?
                        .map(|b| d::hash(&b))
                        .transpose()?,
                    previous_secret_expires_at: ts_opt(row, "previous_secret_expires_at")?,
                    bundle: col(row, "bundle")?,
                    created_at: ts(row, "created_at")?,
                    expires_at: ts_opt(row, "expires_at")?,
                    rotated_at: ts_opt(row, "rotated_at")?,
                    revoked_at: ts_opt(row, "revoked_at")?,
                    last_used_at: ts_opt(row, "last_used_at")?,
                    last_used_ip: col(row, "last_used_ip")?,
                })
            }

            fn bundle(row: &DbRow) -> StoreResult<ScopeBundle> {
                Ok(ScopeBundle {
                    id: $crate::portcullis_domain::BundleId::from_string(col::<String>(row, "id")?),
                    workspace_id: WorkspaceId::from_string(col::<String>(row, "workspace_id")?),
                    name: col(row, "name")?,
                    description: col(row, "description")?,
                    scopes: d::scopes(col(row, "scopes")?)?,
                    created_at: ts(row, "created_at")?,
                    updated_at: ts(row, "updated_at")?,
                })
            }

            fn trust_policy(row: &DbRow) -> StoreResult<TrustPolicy> {
                Ok(TrustPolicy {
                    id: $crate::portcullis_domain::TrustPolicyId::from_string(col::<String>(row, "id")?),
                    workspace_id: WorkspaceId::from_string(col::<String>(row, "workspace_id")?),
                    name: col(row, "name")?,
                    issuer: col(row, "issuer")?,
                    audience: col(row, "audience")?,
                    subject: col(row, "subject")?,
                    claims: d::claims(col(row, "claims")?)?,
                    scopes: d::scopes(col(row, "scopes")?)?,
                    max_ttl: $crate::time::Duration::seconds(col::<i64>(row, "max_ttl_seconds")?),
                    created_at: ts(row, "created_at")?,
                })
            }

            impl ApiKeyStore for $store {
                async fn insert_api_key(&self, k: &ApiKey) -> StoreResult<()> {
                    sql!(
                        "INSERT INTO api_keys (id, workspace_id, name, description, metadata, scopes, allowed_cidrs, \
                         rate_limit, environment, prefix, secret_hash, previous_secret_hash, previous_secret_expires_at, \
                         bundle, created_at, expires_at, rotated_at, revoked_at, last_used_at, last_used_ip) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
                    )
                    .bind(k.id.as_str())
                    .bind(k.workspace_id.as_str())
                    .bind(&k.name)
                    .bind(&k.description)
                    .bind(&k.metadata)
                    .bind(k.scopes.to_string())
                    .bind(d::cidrs_json(&k.allowed_cidrs))
                    .bind(k.rate_limit.map(|r| r.to_string()))
                    .bind(k.environment.as_str())
                    .bind(&k.prefix)
                    .bind(k.secret_hash.as_bytes().to_vec())
                    .bind(k.previous_secret_hash.as_ref().map(|h| h.as_bytes().to_vec()))
                    .bind(k.previous_secret_expires_at.map(|t| t.unix_timestamp()))
                    .bind(&k.bundle)
                    .bind(k.created_at.unix_timestamp())
                    .bind(k.expires_at.map(|t| t.unix_timestamp()))
                    .bind(k.rotated_at.map(|t| t.unix_timestamp()))
                    .bind(k.revoked_at.map(|t| t.unix_timestamp()))
                    .bind(k.last_used_at.map(|t| t.unix_timestamp()))
                    .bind(&k.last_used_ip)
                    .execute(&self.pool)
                    .await
                    .map_err(err("secret"))?;
                    Ok(())
                }

                async fn api_key_by_hash(&self, hash: &TokenHash) -> StoreResult<Option<ApiKey>> {
                    // Two lookups on two indexes (rather than one OR) so each uses its index.
                    let current = sql!("SELECT * FROM api_keys WHERE secret_hash = $1")
                        .bind(hash.as_bytes().to_vec())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db)?;
                    let row = match current {
                        Some(r) => Some(r),
                        None => sql!("SELECT * FROM api_keys WHERE previous_secret_hash = $1")
                            .bind(hash.as_bytes().to_vec())
                            .fetch_optional(&self.pool)
                            .await
                            .map_err(db)?,
                    };
                    row.map(|r| api_key(&r)).transpose()
                }

                async fn api_key_by_id(&self, id: &$crate::portcullis_domain::ApiKeyId) -> StoreResult<Option<ApiKey>> {
                    sql!("SELECT * FROM api_keys WHERE id = $1")
                        .bind(id.as_str())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db)?
                        .map(|r| api_key(&r))
                        .transpose()
                }

                async fn list_api_keys(&self, ws: &WorkspaceId) -> StoreResult<Vec<ApiKey>> {
                    sql!("SELECT * FROM api_keys WHERE workspace_id = $1 ORDER BY created_at DESC, id DESC")
                        .bind(ws.as_str())
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db)?
                        .iter()
                        .map(api_key)
                        .collect()
                }

                async fn rotate_api_key(
                    &self,
                    id: &$crate::portcullis_domain::ApiKeyId,
                    new_hash: &TokenHash,
                    new_prefix: &str,
                    previous_expires_at: Option<OffsetDateTime>,
                    now: OffsetDateTime,
                ) -> StoreResult<bool> {
                    let grace = previous_expires_at.map(|t| t.unix_timestamp());
                    let n = sql!(
                        "UPDATE api_keys SET \
                         previous_secret_hash = CASE WHEN $4 IS NULL THEN NULL ELSE secret_hash END, \
                         previous_secret_expires_at = $4, secret_hash = $2, prefix = $3, rotated_at = $5 \
                         WHERE id = $1 AND revoked_at IS NULL"
                    )
                    .bind(id.as_str())
                    .bind(new_hash.as_bytes().to_vec())
                    .bind(new_prefix)
                    .bind(grace)
                    .bind(now.unix_timestamp())
                    .execute(&self.pool)
                    .await
                    .map_err(err("secret"))?
                    .rows_affected();
                    Ok(n > 0)
                }

                async fn revoke_api_key(
                    &self,
                    id: &$crate::portcullis_domain::ApiKeyId,
                    now: OffsetDateTime,
                ) -> StoreResult<bool> {
                    let n = sql!("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                        .bind(id.as_str())
                        .bind(now.unix_timestamp())
                        .execute(&self.pool)
                        .await
                        .map_err(db)?
                        .rows_affected();
                    Ok(n > 0)
                }

                async fn record_api_key_usage(&self, uses: &[KeyUsage]) -> StoreResult<()> {
                    if uses.is_empty() {
                        return Ok(());
                    }
                    let mut tx = $crate::round_trips::begin(&self.pool).await.map_err(db)?;
                    for u in uses {
                        sql!(
                            "UPDATE api_keys SET last_used_at = $2, last_used_ip = $3 \
                             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at <= $2)"
                        )
                        .bind(u.id.as_str())
                        .bind(u.at.unix_timestamp())
                        .bind(&u.ip)
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                    }
                    tx.commit().await.map_err(db)
                }
            }

            impl BundleStore for $store {
                async fn insert_bundle(&self, b: &ScopeBundle) -> StoreResult<()> {
                    sql!(
                        "INSERT INTO scope_bundles (id, workspace_id, name, description, scopes, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7)"
                    )
                    .bind(b.id.as_str())
                    .bind(b.workspace_id.as_str())
                    .bind(&b.name)
                    .bind(&b.description)
                    .bind(b.scopes.to_string())
                    .bind(b.created_at.unix_timestamp())
                    .bind(b.updated_at.unix_timestamp())
                    .execute(&self.pool)
                    .await
                    .map_err(err("name"))?;
                    Ok(())
                }

                async fn bundle_by_name(&self, ws: &WorkspaceId, name: &str) -> StoreResult<Option<ScopeBundle>> {
                    sql!("SELECT * FROM scope_bundles WHERE workspace_id = $1 AND name = $2")
                        .bind(ws.as_str())
                        .bind(name)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db)?
                        .map(|r| bundle(&r))
                        .transpose()
                }

                async fn list_bundles(&self, ws: &WorkspaceId) -> StoreResult<Vec<ScopeBundle>> {
                    sql!("SELECT * FROM scope_bundles WHERE workspace_id = $1 ORDER BY name")
                        .bind(ws.as_str())
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db)?
                        .iter()
                        .map(bundle)
                        .collect()
                }

                async fn update_bundle(&self, b: &ScopeBundle) -> StoreResult<bool> {
                    let n = sql!(
                        "UPDATE scope_bundles SET scopes = $3, description = $4, updated_at = $5 \
                         WHERE workspace_id = $1 AND name = $2"
                    )
                    .bind(b.workspace_id.as_str())
                    .bind(&b.name)
                    .bind(b.scopes.to_string())
                    .bind(&b.description)
                    .bind(b.updated_at.unix_timestamp())
                    .execute(&self.pool)
                    .await
                    .map_err(db)?
                    .rows_affected();
                    Ok(n > 0)
                }

                async fn delete_bundle(&self, ws: &WorkspaceId, name: &str) -> StoreResult<bool> {
                    let n = sql!("DELETE FROM scope_bundles WHERE workspace_id = $1 AND name = $2")
                        .bind(ws.as_str())
                        .bind(name)
                        .execute(&self.pool)
                        .await
                        .map_err(db)?
                        .rows_affected();
                    Ok(n > 0)
                }
            }

            impl TrustPolicyStore for $store {
                async fn insert_trust_policy(&self, p: &TrustPolicy) -> StoreResult<()> {
                    sql!(
                        "INSERT INTO trust_policies (id, workspace_id, name, issuer, audience, subject, claims, scopes, \
                         max_ttl_seconds, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                    )
                    .bind(p.id.as_str())
                    .bind(p.workspace_id.as_str())
                    .bind(&p.name)
                    .bind(&p.issuer)
                    .bind(&p.audience)
                    .bind(&p.subject)
                    .bind(d::claims_json(&p.claims))
                    .bind(p.scopes.to_string())
                    .bind(p.max_ttl.whole_seconds())
                    .bind(p.created_at.unix_timestamp())
                    .execute(&self.pool)
                    .await
                    .map_err(db)?;
                    Ok(())
                }

                async fn trust_policy_by_id(
                    &self,
                    id: &$crate::portcullis_domain::TrustPolicyId,
                ) -> StoreResult<Option<TrustPolicy>> {
                    sql!("SELECT * FROM trust_policies WHERE id = $1")
                        .bind(id.as_str())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db)?
                        .map(|r| trust_policy(&r))
                        .transpose()
                }

                async fn trust_policies_for_issuer(&self, issuer: &str) -> StoreResult<Vec<TrustPolicy>> {
                    sql!("SELECT * FROM trust_policies WHERE issuer = $1 ORDER BY created_at, id")
                        .bind(issuer)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db)?
                        .iter()
                        .map(trust_policy)
                        .collect()
                }

                async fn list_trust_policies(&self, ws: &WorkspaceId) -> StoreResult<Vec<TrustPolicy>> {
                    sql!("SELECT * FROM trust_policies WHERE workspace_id = $1 ORDER BY created_at, id")
                        .bind(ws.as_str())
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db)?
                        .iter()
                        .map(trust_policy)
                        .collect()
                }

                async fn delete_trust_policy(&self, id: &$crate::portcullis_domain::TrustPolicyId) -> StoreResult<bool> {
                    let n = sql!("DELETE FROM trust_policies WHERE id = $1")
                        .bind(id.as_str())
                        .execute(&self.pool)
                        .await
                        .map_err(db)?
                        .rows_affected();
                    Ok(n > 0)
                }
            }

            fn document(row: &DbRow) -> StoreResult<Document> {
                let body: String = col(row, "body")?;
                Ok(Document {
                    workspace_id: WorkspaceId::from_string(col::<String>(row, "workspace_id")?),
                    kind: col(row, "kind")?,
                    id: col(row, "id")?,
                    body: $crate::serde_json::from_str(&body)
                        .map_err(|e| StoreError::Corrupt(format!("document body: {e}")))?,
                    created_at: ts(row, "created_at")?,
                    updated_at: ts(row, "updated_at")?,
                })
            }

            impl DocumentStore for $store {
                async fn insert_document(&self, d: &Document) -> StoreResult<()> {
                    sql!(
                        "INSERT INTO documents (workspace_id, kind, id, body, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)"
                    )
                    .bind(d.workspace_id.as_str())
                    .bind(&d.kind)
                    .bind(&d.id)
                    .bind(d.body.to_string())
                    .bind(d.created_at.unix_timestamp())
                    .bind(d.updated_at.unix_timestamp())
                    .execute(&self.pool)
                    .await
                    .map_err(err("id"))?;
                    Ok(())
                }

                async fn document(&self, ws: &WorkspaceId, kind: &str, id: &str) -> StoreResult<Option<Document>> {
                    sql!("SELECT * FROM documents WHERE workspace_id = $1 AND kind = $2 AND id = $3")
                        .bind(ws.as_str())
                        .bind(kind)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db)?
                        .map(|r| document(&r))
                        .transpose()
                }

                async fn list_documents(
                    &self,
                    ws: &WorkspaceId,
                    kind: &str,
                    after: Option<&str>,
                    limit: i64,
                ) -> StoreResult<Vec<Document>> {
                    sql!(
                        "SELECT * FROM documents WHERE workspace_id = $1 AND kind = $2 AND id > $3 \
                         ORDER BY id LIMIT $4"
                    )
                    .bind(ws.as_str())
                    .bind(kind)
                    .bind(after.unwrap_or(""))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?
                    .iter()
                    .map(document)
                    .collect()
                }

                async fn update_document(&self, d: &Document) -> StoreResult<bool> {
                    let r = sql!(
                        "UPDATE documents SET body = $1, updated_at = $2 \
                         WHERE workspace_id = $3 AND kind = $4 AND id = $5"
                    )
                    .bind(d.body.to_string())
                    .bind(d.updated_at.unix_timestamp())
                    .bind(d.workspace_id.as_str())
                    .bind(&d.kind)
                    .bind(&d.id)
                    .execute(&self.pool)
                    .await
                    .map_err(db)?;
                    Ok(r.rows_affected() == 1)
                }

                async fn delete_document(&self, ws: &WorkspaceId, kind: &str, id: &str) -> StoreResult<bool> {
                    let r = sql!("DELETE FROM documents WHERE workspace_id = $1 AND kind = $2 AND id = $3")
                        .bind(ws.as_str())
                        .bind(kind)
                        .bind(id)
                        .execute(&self.pool)
                        .await
                        .map_err(db)?;
                    Ok(r.rows_affected() == 1)
                }

                async fn count_documents(&self, ws: &WorkspaceId, kind: &str) -> StoreResult<i64> {
                    let row = sql!("SELECT COUNT(*) AS n FROM documents WHERE workspace_id = $1 AND kind = $2")
                        .bind(ws.as_str())
                        .bind(kind)
                        .fetch_one(&self.pool)
                        .await
                        .map_err(db)?;
                    col::<i64>(&row, "n")
                }
            }

            impl MaintenanceStore for $store {
                async fn acquire_lease(
                    &self,
                    name: &str,
                    holder: &str,
                    now: OffsetDateTime,
                    until: OffsetDateTime,
                ) -> StoreResult<bool> {
                    // Insert, or take over an expired lease, or renew our own: one statement, so
                    // two replicas can never both hold it.
                    let row = sql!(
                        "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
                         WHERE leases.expires_at <= $4 OR leases.holder = excluded.holder \
                         RETURNING holder"
                    )
                    .bind(name)
                    .bind(holder)
                    .bind(until.unix_timestamp())
                    .bind(now.unix_timestamp())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)?;
                    Ok(row.is_some())
                }

                async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
                    sql!("DELETE FROM leases WHERE name = $1 AND holder = $2")
                        .bind(name)
                        .bind(holder)
                        .execute(&self.pool)
                        .await
                        .map_err(db)?;
                    Ok(())
                }

                async fn sweep_expired(&self, now: OffsetDateTime, before: OffsetDateTime) -> StoreResult<SweepReport> {
                    let (now, before) = (now.unix_timestamp(), before.unix_timestamp());
                    let mut r = SweepReport::default();
                    let mut tx = $crate::round_trips::begin(&self.pool).await.map_err(db)?;
                    // Families past their life or revoked long enough ago: their tokens can never
                    // be used again. Children first (no cascading deletes in the schema).
                    r.refresh_tokens = sql!("DELETE FROM refresh_tokens WHERE family_id IN \
                         (SELECT id FROM token_families WHERE expires_at < $1 OR revoked_at < $1)")
                        .bind(before).execute(&mut *tx).await.map_err(db)?.rows_affected();
                    r.authorization_codes = sql!("DELETE FROM authorization_codes WHERE expires_at < $1 OR family_id IN \
                         (SELECT id FROM token_families WHERE expires_at < $1 OR revoked_at < $1)")
                        .bind(before).execute(&mut *tx).await.map_err(db)?.rows_affected();
                    r.device_codes = sql!("DELETE FROM device_codes WHERE expires_at < $1 OR family_id IN \
                         (SELECT id FROM token_families WHERE expires_at < $1 OR revoked_at < $1)")
                        .bind(before).execute(&mut *tx).await.map_err(db)?.rows_affected();
                    r.token_families = sql!("DELETE FROM token_families WHERE expires_at < $1 OR revoked_at < $1")
                        .bind(before).execute(&mut *tx).await.map_err(db)?.rows_affected();
                    r.pending_authorizations = sql!("DELETE FROM pending_authorizations WHERE expires_at < $1")
                        .bind(before).execute(&mut *tx).await.map_err(db)?.rows_affected();
                    r.sessions = sql!("DELETE FROM sessions WHERE expires_at < $1")
                        .bind(before).execute(&mut *tx).await.map_err(db)?.rows_affected();
                    r.revoked_access_tokens = sql!("DELETE FROM revoked_access_tokens WHERE expires_at < $1")
                        .bind(now).execute(&mut *tx).await.map_err(db)?.rows_affected();
                    r.user_code_failures = sql!("DELETE FROM user_code_failures WHERE at < $1")
                        .bind(before).execute(&mut *tx).await.map_err(db)?.rows_affected();
                    tx.commit().await.map_err(db)?;
                    Ok(r)
                }
            }

            impl HealthCheck for $store {
                async fn ping(&self) -> StoreResult<()> {
                    sql!("SELECT 1").execute(&self.pool).await.map_err(db)?;
                    Ok(())
                }
            }
        };
        $crate::impl_sql_audit!($store, $db);
    };
}
