//! The command line: `serve` and the admin commands. Admin commands open the same database as
//! `serve` (same `--database-url`), print human-readable text, or one JSON object with `--json`,
//! and on bad input exit non-zero with one line on stderr, having changed nothing.

use crate::config::{self, Config, GlobalArgs, ServeArgs};
use crate::{Application, backend, shutdown_signal, with_store};
use clap::{Parser, Subcommand};
use portcullis_core::Cx;
use portcullis_core::admin::{Admin, NewClient};
use portcullis_core::api_keys::{Expiry, IssuedKeyView, KeyView, NewKey};
use portcullis_core::bundles::BundleView;
use portcullis_core::events::Actor;
use portcullis_core::federation::{NewTrustPolicy, TrustPolicyView};
use portcullis_core::keys::Sealer;
use portcullis_core::service_tokens::{self, Mint, Via};
use portcullis_domain::SystemClock;
use portcullis_store::{Client, Store, Workspace};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::io::Read;
use std::sync::Arc;
use time::format_description::well_known::Rfc3339;

#[derive(Parser, Debug)]
#[command(
    name = "portcullis",
    version,
    about = "Portcullis: OAuth 2.1, API keys and service tokens for multi-tenant SaaS"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (stops gracefully on SIGINT/SIGTERM).
    Serve(Box<ServeArgs>),
    /// Workspaces (tenants).
    #[command(subcommand)]
    Workspace(WorkspaceCmd),
    /// Users who sign in.
    #[command(subcommand)]
    User(UserCmd),
    /// Users' permissions in workspaces.
    #[command(subcommand)]
    Member(MemberCmd),
    /// OAuth clients (apps).
    #[command(subcommand)]
    Client(ClientCmd),
    /// Grants: one user's consent for one client in one workspace.
    #[command(subcommand)]
    Grant(GrantCmd),
    /// JWT signing keys.
    #[command(subcommand, name = "signing-key")]
    SigningKey(SigningKeyCmd),
    /// Scoped API keys for backend integrations.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Named scope lists that keys, clients and service tokens can be created from.
    #[command(subcommand)]
    Bundle(BundleCmd),
    /// Service tokens (5-60 minutes, never stored).
    #[command(subcommand)]
    Token(TokenCmd),
    /// Workload identity federation: which external OIDC tokens may be exchanged for service
    /// tokens (RFC 8693).
    #[command(subcommand, name = "trust-policy")]
    TrustPolicy(TrustPolicyCmd),
    /// The tamper-evident audit log: search, verify, checkpoint, prune, export, webhook sinks.
    #[command(subcommand)]
    Audit(crate::audit_cli::AuditCmd),
}

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Create an API key. The secret is printed once.
    Create {
        #[arg(long, value_name = "SLUG")]
        workspace: String,
        #[arg(long)]
        name: String,
        /// Space-separated scopes (explicit; no wildcards).
        #[arg(long)]
        scope: Option<String>,
        /// Copy the scopes of this bundle (in addition to --scope).
        #[arg(long, value_name = "NAME")]
        bundle: Option<String>,
        /// Only accept the key from this CIDR block (repeatable; IPv4 or IPv6).
        #[arg(long = "allow-cidr", value_name = "CIDR")]
        allow_cidrs: Vec<String>,
        /// Expire after this long, e.g. 30d.
        #[arg(long, value_name = "DURATION", conflicts_with = "expires_at")]
        expires_in: Option<String>,
        /// Expire at this RFC 3339 time.
        #[arg(long, value_name = "RFC3339")]
        expires_at: Option<String>,
        /// Request budget, e.g. 600/min (units: s, min, hour, day).
        #[arg(long, value_name = "N/UNIT")]
        rate_limit: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// A JSON object stored with the key (owner, ticket, …).
        #[arg(long, value_name = "JSON")]
        metadata: Option<String>,
    },
    /// List a workspace's keys (never their secrets).
    List {
        #[arg(long, value_name = "SLUG")]
        workspace: String,
    },
    /// Show one key.
    Show { id: String },
    /// Issue a new secret for the key (same id); the old secret works for the grace period.
    Rotate {
        id: String,
        /// How long the old secret keeps working (default 0s, at most 30d, never past expiry).
        #[arg(long, value_name = "DURATION", default_value = "0s")]
        grace: String,
    },
    /// Revoke a key at once (and every service token it minted).
    Revoke { id: String },
}

#[derive(Subcommand, Debug)]
pub enum BundleCmd {
    /// Define a bundle.
    Create {
        #[arg(long, value_name = "SLUG")]
        workspace: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        scope: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// List a workspace's bundles.
    List {
        #[arg(long, value_name = "SLUG")]
        workspace: String,
    },
    /// Replace a bundle's scopes (credentials created from it earlier keep theirs).
    Update {
        #[arg(long, value_name = "SLUG")]
        workspace: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        scope: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a bundle.
    Delete {
        #[arg(long, value_name = "SLUG")]
        workspace: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Mint a service token (recorded as an event; the token itself is never stored).
    Mint {
        #[arg(long, value_name = "SLUG")]
        workspace: String,
        #[arg(long)]
        scope: Option<String>,
        #[arg(long, value_name = "NAME")]
        bundle: Option<String>,
        /// Lifetime, 5m-60m.
        #[arg(long, value_name = "DURATION", default_value = "15m")]
        ttl: String,
        /// The protected resource the token is for (RFC 8707 `aud`), e.g. `<issuer>/mcp`;
        /// default: the API audience.
        #[arg(long, value_name = "URL")]
        resource: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum TrustPolicyCmd {
    /// Trust tokens of an external OIDC issuer for a workspace.
    Create {
        #[arg(long, value_name = "SLUG")]
        workspace: String,
        #[arg(long)]
        name: String,
        /// The issuer (`iss`), e.g. https://token.actions.githubusercontent.com
        #[arg(long, value_name = "URL")]
        issuer: String,
        /// A value the token's `aud` must contain.
        #[arg(long)]
        audience: String,
        /// Pattern for `sub` (`*` matches any run of characters), e.g.
        /// repo:acme/app:ref:refs/heads/main
        #[arg(long, value_name = "PATTERN")]
        subject: String,
        /// Another claim the token must match, NAME=PATTERN (repeatable).
        #[arg(long = "claim", value_name = "NAME=PATTERN")]
        claims: Vec<String>,
        #[arg(long)]
        scope: Option<String>,
        #[arg(long, value_name = "NAME")]
        bundle: Option<String>,
        /// Lifetime of the service tokens issued (5m-60m).
        #[arg(long, value_name = "DURATION", default_value = "15m")]
        max_ttl: String,
    },
    /// List a workspace's trust policies.
    List {
        #[arg(long, value_name = "SLUG")]
        workspace: String,
    },
    /// Delete a policy; service tokens it issued stop working.
    Delete { id: String },
}

#[derive(Subcommand, Debug)]
pub enum GrantCmd {
    /// List active grants, newest first.
    List {
        #[arg(long, value_name = "SLUG")]
        workspace: Option<String>,
        #[arg(long, value_name = "CLIENT_ID")]
        client: Option<String>,
    },
    /// Revoke a grant and every token issued under it (other workspaces are untouched).
    Revoke { id: String },
}

#[derive(Subcommand, Debug)]
pub enum SigningKeyCmd {
    /// Create a new signing key: published in the JWKS now, signing after the activation delay;
    /// older keys stay published until every token they signed has expired.
    Rotate {
        /// How long the new key is published before it signs (default 10m, or
        /// signing_key_activation_delay in the config file). Longer than JWKS caches keep keys.
        #[arg(long, env = "PORTCULLIS_SIGNING_KEY_ACTIVATION_DELAY", value_name = "DURATION")]
        activation_delay: Option<String>,
    },
    /// List signing keys and their state.
    List,
}

#[derive(Subcommand, Debug)]
pub enum WorkspaceCmd {
    /// Create a workspace.
    Create {
        /// Lower-case letters, digits and hyphens, e.g. acme.
        slug: String,
        /// Display name (defaults to the slug).
        #[arg(long)]
        name: Option<String>,
    },
    /// List workspaces.
    List,
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Create a user; the password is read from standard input.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: Option<String>,
        /// Read the password from stdin (required: passwords never go on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// List users.
    List,
}

#[derive(Subcommand, Debug)]
pub enum MemberCmd {
    /// Give a user permissions in a workspace (replacing any they had there).
    Add {
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        email: String,
        /// Space-separated scopes the user may delegate in this workspace.
        #[arg(long)]
        permissions: String,
    },
    /// Remove a user from a workspace.
    Remove {
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        email: String,
    },
    /// List a workspace's members.
    List {
        #[arg(long)]
        workspace: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClientCmd {
    /// Register an OAuth client. A confidential client's secret is printed once.
    Create {
        #[arg(long)]
        name: String,
        /// Registered redirect URI (repeatable); compared by exact string match.
        #[arg(long = "redirect-uri", value_name = "URI")]
        redirect_uris: Vec<String>,
        /// Space-separated scopes the client may ever be granted.
        #[arg(long)]
        scope: String,
        /// Allowed grant type (repeatable; default authorization_code and refresh_token).
        #[arg(long = "grant-type", value_name = "TYPE")]
        grant_types: Vec<String>,
        /// A public client (no secret; e.g. a native or single-page app).
        #[arg(long)]
        public: bool,
        /// Bind the client to one workspace (it can only ever be granted that workspace; required
        /// for client_credentials).
        #[arg(long, value_name = "SLUG")]
        workspace: Option<String>,
        /// Overlap window for concurrent refreshes, 0-60s (default 0): within it the previous
        /// refresh token returns the same new pair instead of counting as a replay.
        #[arg(long, value_name = "DURATION")]
        refresh_overlap: Option<String>,
        /// Add the scopes of this bundle of --workspace.
        #[arg(long, value_name = "NAME", requires = "workspace")]
        bundle: Option<String>,
        /// Accept only pushed authorization requests from this client (RFC 9126).
        #[arg(long)]
        require_par: bool,
        /// Issue this client only DPoP-bound tokens (RFC 9449): token requests need a proof.
        #[arg(long)]
        dpop: bool,
    },
    /// List clients.
    List,
    /// Issue a new client secret; the old one keeps working for the grace period (default 0s,
    /// at most 30d).
    RotateSecret {
        id: String,
        #[arg(long, value_name = "DURATION", default_value = "0s")]
        grace: String,
    },
    /// Revoke a client: it cannot authenticate any more and all its tokens become inactive.
    Revoke { id: String },
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), String> {
    let file = config::load_file(cli.global.config.as_deref())?;
    let kek = std::env::var("PORTCULLIS_KEY_ENCRYPTION_KEY").ok().filter(|v| !v.is_empty());
    match cli.command {
        Command::Serve(serve_args) => {
            let cfg = config::resolve(&cli.global, &serve_args, file, kek)?;
            crate::logging::init(Some(cfg.log_format));
            let backend = backend::open(&cfg.database_url).await?;
            with_store!(backend, |store| serve(store, cfg).await)
        }
        cmd => {
            crate::logging::init(None);
            let cfg = config::resolve(&cli.global, &ServeArgs::default(), file, kek)?;
            let catalogue = Arc::new(cfg.catalogue()?);
            let backend = backend::open(&cfg.database_url).await?;
            let json = cli.global.json;
            let sealer = Arc::new(Sealer::new(cfg.key_encryption_key.as_ref())?);
            with_store!(backend, |store| {
                // Commands that need the full context (signing keys, the audit log).
                if matches!(cmd, Command::Token(TokenCmd::Mint { .. }) | Command::Audit(_)) {
                    let cx = Cx::init(
                        store,
                        Arc::new(SystemClock),
                        cfg.settings(),
                        (*catalogue).clone(),
                        cfg.key_encryption_key.as_ref(),
                    )
                    .await?;
                    return match &cmd {
                        Command::Token(TokenCmd::Mint { workspace, scope, bundle, ttl, resource }) => {
                            let what = MintWhat {
                                scope: scope.as_deref(),
                                bundle: bundle.as_deref(),
                                ttl,
                                resource: resource.as_deref(),
                            };
                            mint_token(&cx, workspace, what, json).await
                        }
                        Command::Audit(audit) => crate::audit_cli::run(&cx, audit, json).await,
                        _ => unreachable!("matched above"),
                    };
                }
                let admin = Admin::new(store, Arc::new(SystemClock), catalogue, sealer)
                    .with_key_environment(cfg.key_environment);
                run_admin(&admin, &cmd, json, &cfg).await
            })
        }
    }
}

async fn serve<S: Store>(store: S, mut cfg: Config) -> Result<(), String> {
    let catalogue = cfg.catalogue()?;
    let listener = tokio::net::TcpListener::bind(&cfg.bind)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.bind))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    if !cfg.issuer_configured {
        // `--bind 127.0.0.1:0` picks a free port; the default issuer names the real one.
        cfg.issuer = format!("http://{addr}");
    }
    let mut cx =
        Cx::init(store, Arc::new(SystemClock), cfg.settings(), catalogue, cfg.key_encryption_key.as_ref())
            .await?;
    if let Some(url) = &cfg.redis_url {
        cx.replay = Arc::new(
            portcullis_guard::replay::RedisReplay::connect(url.expose_secret(), "portcullis:replay:").await?,
        );
    }
    if !cx.sealer.is_sealing() {
        tracing::warn!("no key-encryption key configured: signing keys are stored unencrypted");
    }
    let limiter = match &cfg.redis_url {
        Some(url) => portcullis_guard::Limiter::redis(url.expose_secret(), "portcullis:rl:").await?,
        None => portcullis_guard::Limiter::default(),
    };
    let gateway = portcullis_http::gateway::parse_routes(&cfg.gateway_routes, &cx.catalogue)?;
    if !gateway.is_empty() {
        tracing::info!(routes = gateway.len(), "gateway mode: proxying guarded routes upstream");
    }
    let protection = portcullis_http::Protection { limiter, budgets: cfg.budgets, gateway };
    let instance = cx.instance.clone();
    let app = Application::build_with(cx, listener, protection);
    tracing::info!(
        %addr,
        issuer = %cfg.issuer,
        database = %redact(&cfg.database_url),
        %instance,
        "portcullis listening"
    );
    app.run_until(shutdown_signal()).await.map_err(|e| e.to_string())?;
    tracing::info!("stopped");
    Ok(())
}

/// The database URL without its password, for logs.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// RFC 3339 at whole seconds, the precision timestamps are stored with.
fn ts(t: time::OffsetDateTime) -> String {
    t.replace_nanosecond(0).unwrap_or(t).format(&Rfc3339).unwrap_or_default()
}

fn workspace_json(w: &Workspace) -> Value {
    json!({ "id": w.id, "slug": w.slug, "name": w.name, "created_at": ts(w.created_at) })
}

fn client_json(c: &Client, workspace: Option<&Workspace>) -> Value {
    json!({
        "client_id": c.id,
        "name": c.name,
        "public": c.is_public(),
        "token_endpoint_auth_method": if c.is_public() { "none" } else { "client_secret_basic" },
        "redirect_uris": c.redirect_uris,
        "scope": c.scopes,
        "grant_types": c.grant_types,
        "workspace": workspace.map(|w| w.slug.to_string()),
        "workspace_id": c.workspace_id,
        "created_at": ts(c.created_at),
        "origin": c.origin.as_str(),
        "require_pushed_authorization_requests": c.require_pushed_requests,
        "dpop_bound_access_tokens": c.dpop_bound,
        "last_used_at": c.last_used_at.map(ts),
    })
}

/// Output: one JSON object with `--json`, text otherwise.
fn emit(json: bool, value: Value, human: String) {
    if json {
        println!("{value}");
    } else {
        println!("{human}");
    }
}

fn read_password() -> Result<SecretString, String> {
    let mut buf = String::new();
    std::io::stdin()
        .read_to_string(&mut buf)
        .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
    let pw = buf.strip_suffix('\n').map(|s| s.strip_suffix('\r').unwrap_or(s)).unwrap_or(&buf);
    Ok(SecretString::from(pw.to_owned()))
}

fn parse_duration(name: &str, v: &str) -> Result<time::Duration, String> {
    config::non_negative(name, Some(v.to_owned()), time::Duration::ZERO)
}

fn grant_json(g: &portcullis_store::Grant) -> Value {
    json!({
        "id": g.id, "user_id": g.user_id, "client_id": g.client_id, "workspace_id": g.workspace_id,
        "scope": g.scopes, "created_at": ts(g.created_at), "updated_at": ts(g.updated_at),
        "revoked_at": g.revoked_at.map(ts),
    })
}

pub async fn run_admin<S: Store>(
    admin: &Admin<S>,
    cmd: &Command,
    json: bool,
    cfg: &Config,
) -> Result<(), String> {
    let e = |e: portcullis_core::admin::AdminError| e.to_string();
    match cmd {
        Command::Serve(_) | Command::Audit(_) => unreachable!("serve and audit are handled by run"),
        Command::Workspace(WorkspaceCmd::Create { slug, name }) => {
            let w = admin.create_workspace(slug, name.as_deref()).await.map_err(e)?;
            emit(
                json,
                workspace_json(&w),
                format!("Created workspace {} ({}) with id {}", w.slug, w.name, w.id),
            );
        }
        Command::Workspace(WorkspaceCmd::List) => {
            let ws = admin.list_workspaces().await.map_err(e)?;
            let human = if ws.is_empty() {
                "No workspaces.".to_owned()
            } else {
                ws.iter()
                    .map(|w| format!("{:<24} {:<32} {}", w.slug, w.name, w.id))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            emit(json, json!({ "workspaces": ws.iter().map(workspace_json).collect::<Vec<_>>() }), human);
        }
        Command::User(UserCmd::Create { email, name, password_stdin: _ }) => {
            let pw = read_password()?;
            let u = admin.create_user(email, name.as_deref(), pw).await.map_err(e)?;
            emit(
                json,
                json!({ "id": u.id, "email": u.email, "name": u.name }),
                format!("Created user {} with id {}", u.email, u.id),
            );
        }
        Command::User(UserCmd::List) => {
            let us = admin.list_users().await.map_err(e)?;
            let human = if us.is_empty() {
                "No users.".to_owned()
            } else {
                us.iter()
                    .map(|u| format!("{:<32} {:<24} {}", u.email, u.name.as_deref().unwrap_or("-"), u.id))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            let v: Vec<Value> = us
                .iter()
                .map(|u| json!({ "id": u.id, "email": u.email, "name": u.name, "created_at": ts(u.created_at) }))
                .collect();
            emit(json, json!({ "users": v }), human);
        }
        Command::Member(MemberCmd::Add { workspace, email, permissions }) => {
            let (w, u, m, write) = admin.add_member(workspace, email, permissions).await.map_err(e)?;
            let created = write == portcullis_store::MembershipWrite::Created;
            emit(
                json,
                json!({
                    "workspace": w.slug, "workspace_id": w.id, "user_id": u.id, "email": u.email,
                    "permissions": m.permissions, "created": created,
                }),
                format!(
                    "{} {} in {} with permissions: {}",
                    if created { "Added" } else { "Updated" },
                    u.email,
                    w.slug,
                    m.permissions
                ),
            );
        }
        Command::Member(MemberCmd::Remove { workspace, email }) => {
            admin.remove_member(workspace, email).await.map_err(e)?;
            emit(
                json,
                json!({ "workspace": workspace, "email": email, "removed": true }),
                format!("Removed {email} from {workspace}"),
            );
        }
        Command::Member(MemberCmd::List { workspace }) => {
            let (w, members) = admin.list_members(workspace).await.map_err(e)?;
            let human = if members.is_empty() {
                format!("{} has no members.", w.slug)
            } else {
                members
                    .iter()
                    .map(|(u, m)| format!("{:<32} {}", u.email, m.permissions))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            let v: Vec<Value> = members
                .iter()
                .map(|(u, m)| json!({ "user_id": u.id, "email": u.email, "name": u.name, "permissions": m.permissions }))
                .collect();
            emit(json, json!({ "workspace": w.slug, "members": v }), human);
        }
        Command::Client(ClientCmd::Create {
            name,
            redirect_uris,
            scope,
            grant_types,
            public,
            workspace,
            refresh_overlap,
            bundle,
            require_par,
            dpop,
        }) => {
            let refresh_overlap =
                refresh_overlap.as_deref().map(|v| parse_duration("--refresh-overlap", v)).transpose()?;
            let created = admin
                .create_client(NewClient {
                    name: name.clone(),
                    redirect_uris: redirect_uris.clone(),
                    scope: scope.clone(),
                    grant_types: grant_types.clone(),
                    public: *public,
                    workspace: workspace.clone(),
                    refresh_overlap,
                    bundle: bundle.clone(),
                    require_pushed_requests: *require_par,
                    dpop_bound: *dpop,
                })
                .await
                .map_err(e)?;
            let ws = match &workspace {
                Some(slug) => Some(admin.workspace(slug).await.map_err(e)?),
                None => None,
            };
            let c = &created.client;
            let mut v = client_json(c, ws.as_ref());
            let mut human = format!(
                "Created {} client {:?}\n  client_id:     {}\n  scope:         {}\n  redirect_uris: {}",
                if c.is_public() { "public" } else { "confidential" },
                c.name,
                c.id,
                c.scopes,
                c.redirect_uris.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(" ")
            );
            if let Some(secret) = &created.secret {
                v["client_secret"] = Value::String(secret.expose_secret().to_owned());
                human.push_str(&format!(
                    "\n  client_secret: {}\nStore the secret now: it is shown only once and cannot be recovered.",
                    secret.expose_secret()
                ));
            }
            emit(json, v, human);
        }
        Command::Client(ClientCmd::RotateSecret { id, grace }) => {
            let grace = parse_duration("--grace", grace)?;
            let r = admin.rotate_client_secret(id, grace).await.map_err(e)?;
            let secret = r.secret.as_ref().map(|s| s.expose_secret().to_owned()).unwrap_or_default();
            let until = r.client.previous_secret_expires_at.map(ts);
            emit(
                json,
                json!({ "client_id": r.client.id, "client_secret": secret, "previous_secret_expires_at": until }),
                format!(
                    "New secret for {}: {secret}\nThe previous secret works until {}.\nStore the secret now: it is shown only once.",
                    r.client.id,
                    until.as_deref().unwrap_or("now")
                ),
            );
        }
        Command::Client(ClientCmd::Revoke { id }) => {
            let c = admin.revoke_client(id).await.map_err(e)?;
            emit(
                json,
                json!({ "client_id": c.id, "revoked_at": c.revoked_at.map(ts) }),
                format!("Revoked client {}: it cannot authenticate and its tokens are inactive", c.id),
            );
        }
        Command::Grant(GrantCmd::List { workspace, client }) => {
            let gs = admin.list_grants(workspace.as_deref(), client.as_deref()).await.map_err(e)?;
            let human = if gs.is_empty() {
                "No active grants.".to_owned()
            } else {
                gs.iter()
                    .map(|g| {
                        format!("{}  {}  {}  {}  {}", g.id, g.client_id, g.workspace_id, g.user_id, g.scopes)
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            emit(json, json!({ "grants": gs.iter().map(grant_json).collect::<Vec<_>>() }), human);
        }
        Command::Grant(GrantCmd::Revoke { id }) => {
            let g = admin.revoke_grant(id).await.map_err(e)?;
            emit(json, grant_json(&g), format!("Revoked grant {} and every token issued under it", g.id));
        }
        Command::SigningKey(SigningKeyCmd::Rotate { activation_delay }) => {
            let delay = match activation_delay {
                Some(v) => parse_duration("--activation-delay", v)?,
                None => cfg.signing_key_activation_delay,
            };
            let k = admin.rotate_signing_key(delay, cfg.settings().longest_token_ttl()).await.map_err(e)?;
            emit(
                json,
                json!({ "kid": k.kid, "alg": k.alg, "created_at": ts(k.created_at), "active_from": ts(k.active_from) }),
                format!(
                    "New signing key {}: published now, signing from {}; older keys retire once their tokens expire",
                    k.kid,
                    ts(k.active_from)
                ),
            );
        }
        Command::SigningKey(SigningKeyCmd::List) => {
            let now = admin.clock.now();
            let keys = admin.signing_keys().await.map_err(e)?;
            let signing = keys
                .iter()
                .find(|k| k.active_from <= now && k.retired_at.is_none_or(|r| r > now))
                .map(|k| k.kid.clone());
            let state = |k: &portcullis_store::SigningKey| {
                if k.retired_at.is_some_and(|r| r <= now) {
                    "retired"
                } else if Some(&k.kid) == signing.as_ref() {
                    "signing"
                } else if k.active_from > now {
                    "published"
                } else {
                    "retiring"
                }
            };
            let v: Vec<Value> = keys
                .iter()
                .map(|k| {
                    json!({
                        "kid": k.kid, "alg": k.alg, "state": state(k), "created_at": ts(k.created_at),
                        "active_from": ts(k.active_from), "retired_at": k.retired_at.map(ts),
                        "generation": k.generation,
                    })
                })
                .collect();
            let human = keys
                .iter()
                .map(|k| {
                    format!(
                        "{:<38} {:<9} from {}  retires {}",
                        k.kid,
                        state(k),
                        ts(k.active_from),
                        k.retired_at.map(ts).unwrap_or_else(|| "-".into())
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            emit(json, json!({ "signing_keys": v }), human);
        }
        Command::Key(k) => key_command(admin, k, json).await?,
        Command::Bundle(b) => bundle_command(admin, b, json).await?,
        Command::TrustPolicy(t) => trust_command(admin, t, json).await?,
        Command::Token(_) => unreachable!("token mint is handled by run: it needs the signing keys"),
        Command::Client(ClientCmd::List) => {
            let cs = admin.list_clients().await.map_err(e)?;
            let human = if cs.is_empty() {
                "No clients.".to_owned()
            } else {
                cs.iter()
                    .map(|c| {
                        format!(
                            "{:<40} {:<24} {}",
                            c.id,
                            c.name,
                            if c.is_public() { "public" } else { "confidential" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            let v: Vec<Value> = cs.iter().map(|c| client_json(c, None)).collect();
            emit(json, json!({ "clients": v }), human);
        }
    }
    Ok(())
}

fn key_line(k: &KeyView) -> String {
    format!("{:<38} {:<24} {:<8} {}…  {}", k.id, k.name, k.status, k.prefix, k.scopes.join(" "))
}

fn issued_human(verb: &str, k: &IssuedKeyView) -> String {
    let mut h = format!(
        "{verb} API key {} ({})\n  scopes: {}\n  secret: {}",
        k.key.id,
        k.key.name,
        k.key.scopes.join(" "),
        k.secret
    );
    if let Some(until) = &k.key.previous_secret_expires_at {
        h.push_str(&format!("\n  the previous secret works until {until}"));
    }
    h.push_str("\nStore the secret now: it is shown only once and cannot be recovered.");
    h
}

async fn key_command<S: Store>(admin: &Admin<S>, cmd: &KeyCmd, json: bool) -> Result<(), String> {
    let e = |e: portcullis_core::admin::AdminError| e.to_string();
    let cli = Actor::cli();
    let now = admin.clock.now();
    match cmd {
        KeyCmd::Create {
            workspace,
            name,
            scope,
            bundle,
            allow_cidrs,
            expires_in,
            expires_at,
            rate_limit,
            description,
            metadata,
        } => {
            let ws = admin.workspace(workspace).await.map_err(e)?;
            let expires = match (expires_in, expires_at) {
                (Some(d), _) => Some(Expiry::In(parse_duration("--expires-in", d)?)),
                (None, Some(t)) => Some(Expiry::At(
                    time::OffsetDateTime::parse(t, &Rfc3339)
                        .map_err(|_| format!("--expires-at {t:?} is not an RFC 3339 time"))?,
                )),
                (None, None) => None,
            };
            let metadata = metadata
                .as_deref()
                .map(serde_json::from_str::<Value>)
                .transpose()
                .map_err(|e| format!("--metadata is not JSON: {e}"))?;
            let req = NewKey {
                name: name.clone(),
                description: description.clone(),
                metadata,
                scope: scope.clone(),
                bundle: bundle.clone(),
                allow_cidrs: allow_cidrs.clone(),
                expires,
                rate_limit: rate_limit.clone(),
            };
            let issued = admin.create_key(&cli, &ws, req, None).await.map_err(e)?.view(now);
            emit(json, json!(issued), issued_human("Created", &issued));
        }
        KeyCmd::List { workspace } => {
            let ws = admin.workspace(workspace).await.map_err(e)?;
            let keys: Vec<KeyView> =
                admin.list_keys(&ws).await.map_err(e)?.iter().map(|k| KeyView::of(k, now)).collect();
            let human = listing(&keys, key_line, format!("No API keys in {}.", ws.slug));
            emit(json, json!({ "keys": keys }), human);
        }
        KeyCmd::Show { id } => {
            let k = KeyView::of(&admin.key(id, None).await.map_err(e)?, now);
            let human = format!(
                "{}\n  cidrs: {}\n  rate limit: {}\n  expires: {}\n  last used: {} from {}",
                key_line(&k),
                if k.allowed_cidrs.is_empty() { "any".into() } else { k.allowed_cidrs.join(" ") },
                k.rate_limit.as_deref().unwrap_or("none"),
                k.expires_at.as_deref().unwrap_or("never"),
                k.last_used_at.as_deref().unwrap_or("never"),
                k.last_used_ip.as_deref().unwrap_or("-"),
            );
            emit(json, json!(k), human);
        }
        KeyCmd::Rotate { id, grace } => {
            let grace = parse_duration("--grace", grace)?;
            let issued = admin.rotate_key(&cli, id, None, grace).await.map_err(e)?.view(now);
            emit(json, json!(issued), issued_human("Rotated", &issued));
        }
        KeyCmd::Revoke { id } => {
            let k = KeyView::of(&admin.revoke_key(&cli, id, None).await.map_err(e)?, now);
            emit(json, json!(k), format!("Revoked API key {} ({}); it stops working now", k.id, k.name));
        }
    }
    Ok(())
}

async fn bundle_command<S: Store>(admin: &Admin<S>, cmd: &BundleCmd, json: bool) -> Result<(), String> {
    let e = |e: portcullis_core::admin::AdminError| e.to_string();
    let cli = Actor::cli();
    let line = |b: &BundleView| format!("{:<32} {}", b.name, b.scopes.join(" "));
    match cmd {
        BundleCmd::Create { workspace, name, scope, description } => {
            let ws = admin.workspace(workspace).await.map_err(e)?;
            let b = BundleView::from(
                &admin
                    .create_bundle(&cli, &ws, name, scope, description.as_deref(), None)
                    .await
                    .map_err(e)?,
            );
            emit(json, json!(b), format!("Created bundle {}", line(&b)));
        }
        BundleCmd::List { workspace } => {
            let ws = admin.workspace(workspace).await.map_err(e)?;
            let bs: Vec<BundleView> =
                admin.list_bundles(&ws).await.map_err(e)?.iter().map(BundleView::from).collect();
            let human = listing(&bs, line, format!("No bundles in {}.", ws.slug));
            emit(json, json!({ "bundles": bs }), human);
        }
        BundleCmd::Update { workspace, name, scope, description } => {
            let ws = admin.workspace(workspace).await.map_err(e)?;
            let b = BundleView::from(
                &admin
                    .update_bundle(&cli, &ws, name, scope, description.as_deref(), None)
                    .await
                    .map_err(e)?,
            );
            emit(
                json,
                json!(b),
                format!("Updated bundle {} (existing credentials keep their scopes)", line(&b)),
            );
        }
        BundleCmd::Delete { workspace, name } => {
            let ws = admin.workspace(workspace).await.map_err(e)?;
            admin.delete_bundle(&cli, &ws, name).await.map_err(e)?;
            emit(json, json!({ "deleted": name }), format!("Deleted bundle {name}"));
        }
    }
    Ok(())
}

async fn trust_command<S: Store>(admin: &Admin<S>, cmd: &TrustPolicyCmd, json: bool) -> Result<(), String> {
    let e = |e: portcullis_core::admin::AdminError| e.to_string();
    let cli = Actor::cli();
    let line = |p: &TrustPolicyView| {
        format!("{:<38} {:<20} {} sub={} scopes={}", p.id, p.name, p.issuer, p.subject, p.scopes.join(" "))
    };
    match cmd {
        TrustPolicyCmd::Create {
            workspace,
            name,
            issuer,
            audience,
            subject,
            claims,
            scope,
            bundle,
            max_ttl,
        } => {
            let ws = admin.workspace(workspace).await.map_err(e)?;
            let req = NewTrustPolicy {
                name: name.clone(),
                issuer: issuer.clone(),
                audience: audience.clone(),
                subject: subject.clone(),
                claims: claims.clone(),
                scope: scope.clone(),
                bundle: bundle.clone(),
                max_ttl: parse_duration("--max-ttl", max_ttl)?,
            };
            let p = TrustPolicyView::from(&admin.create_trust_policy(&cli, &ws, req, None).await.map_err(e)?);
            emit(json, json!(p), format!("Created trust policy {}", line(&p)));
        }
        TrustPolicyCmd::List { workspace } => {
            let ws = admin.workspace(workspace).await.map_err(e)?;
            let ps: Vec<TrustPolicyView> =
                admin.list_trust_policies(&ws).await.map_err(e)?.iter().map(TrustPolicyView::from).collect();
            let human = listing(&ps, line, format!("No trust policies in {}.", ws.slug));
            emit(json, json!({ "trust_policies": ps }), human);
        }
        TrustPolicyCmd::Delete { id } => {
            let p = TrustPolicyView::from(&admin.delete_trust_policy(&cli, id, None).await.map_err(e)?);
            emit(json, json!(p), format!("Deleted trust policy {}; its service tokens stop working", p.id));
        }
    }
    Ok(())
}

/// `token mint`: needs the signing keys, so it runs with a full context.
/// What `token mint` asks for.
struct MintWhat<'a> {
    scope: Option<&'a str>,
    bundle: Option<&'a str>,
    ttl: &'a str,
    resource: Option<&'a str>,
}

async fn mint_token<S: Store>(
    cx: &Cx<S>,
    workspace: &str,
    what: MintWhat<'_>,
    json: bool,
) -> Result<(), String> {
    let MintWhat { scope, bundle, ttl, resource } = what;
    let admin = cx.admin();
    let e = |e: portcullis_core::admin::AdminError| e.to_string();
    let ttl = parse_duration("--ttl", ttl)?;
    service_tokens::check_ttl(ttl)?;
    let ws = admin.workspace(workspace).await.map_err(e)?;
    let (scopes, _) = admin.expand_scopes(&ws, scope, bundle).await.map_err(e)?;
    admin.check_credential_scopes(&scopes, None).map_err(e)?;
    let actor = Actor::cli();
    let t = service_tokens::mint(
        cx,
        Mint {
            workspace: &ws.id,
            scopes: &scopes,
            ttl,
            actor: &actor,
            via: Via::Cli,
            subject: "cli",
            detail: json!({}),
            resource,
        },
    )
    .await
    .map_err(|e| e.description.map(|d| d.to_string()).unwrap_or_else(|| e.code.to_string()))?;
    let scope = t.scope.clone().unwrap_or_default();
    emit(
        json,
        json!({ "access_token": t.access_token, "token_type": t.token_type, "expires_in": t.expires_in, "scope": scope }),
        t.access_token.clone(),
    );
    Ok(())
}

/// One line per item, or `empty` when there are none.
fn listing<T>(items: &[T], line: impl Fn(&T) -> String, empty: String) -> String {
    if items.is_empty() { empty } else { items.iter().map(line).collect::<Vec<_>>().join("\n") }
}
