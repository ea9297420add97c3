//! The `portcullis` binary: admin commands (human and --json output, errors, atomicity),
//! configuration precedence, and `serve` with graceful shutdown.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    c.env_remove("PORTCULLIS_DATABASE_URL")
        .env_remove("PORTCULLIS_CONFIG")
        .env_remove("PORTCULLIS_SCOPE_CATALOGUE");
    c
}

struct Db {
    dir: tempfile::TempDir,
}

impl Db {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("cli.db").display())
    }

    fn run(&self, args: &[&str]) -> Output {
        bin().arg("--database-url").arg(self.url()).args(args).output().unwrap()
    }

    fn run_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = bin()
            .arg("--database-url")
            .arg(self.url())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.run(&a);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(stdout.trim().lines().count(), 1, "one JSON object: {stdout}");
        serde_json::from_str(&stdout).unwrap()
    }

    /// Asserts failure with exactly one line on stderr, and returns it.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim().lines().count(), 1, "one line on stderr: {err}");
        assert!(out.stdout.is_empty());
        err
    }

    fn snapshot(&self) -> String {
        let mut s = String::new();
        for what in [["workspace", "list"], ["user", "list"], ["client", "list"]] {
            s.push_str(&self.json(&what).to_string());
        }
        s.push_str(&self.json(&["member", "list", "--workspace", "acme"]).to_string());
        s
    }
}

#[test]
fn admin_commands_print_json_and_text() {
    let db = Db::new();
    let w = db.json(&["workspace", "create", "acme", "--name", "Acme Inc"]);
    assert_eq!(w["slug"], "acme");
    assert_eq!(w["name"], "Acme Inc");
    assert!(w["id"].as_str().unwrap().starts_with("ws_"));

    let out = db.run_stdin(
        &["user", "create", "--email", "Ada@Example.com", "--name", "Ada", "--password-stdin", "--json"],
        "correct horse\n",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let u: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(u["email"], "ada@example.com");
    assert!(u["id"].as_str().unwrap().starts_with("usr_"));

    let m = db.json(&[
        "member",
        "add",
        "--workspace",
        "acme",
        "--email",
        "ada@example.com",
        "--permissions",
        "contacts:read contacts:write",
    ]);
    assert_eq!(m["permissions"], "contacts:read contacts:write");
    assert_eq!(m["created"], true);
    let m = db.json(&[
        "member",
        "add",
        "--workspace",
        "acme",
        "--email",
        "ada@example.com",
        "--permissions",
        "contacts:read",
    ]);
    assert_eq!(m["created"], false);

    let c = db.json(&[
        "client",
        "create",
        "--name",
        "Zapier",
        "--redirect-uri",
        "https://zapier.example/cb",
        "--redirect-uri",
        "http://127.0.0.1/cb",
        "--scope",
        "contacts:read openid",
    ]);
    assert!(c["client_id"].as_str().unwrap().starts_with("cl_"));
    assert!(c["client_secret"].as_str().unwrap().starts_with("pcl_cs_"));
    assert_eq!(c["grant_types"], serde_json::json!(["authorization_code", "refresh_token"]));
    assert_eq!(c["redirect_uris"].as_array().unwrap().len(), 2);

    let p = db.json(&[
        "client",
        "create",
        "--name",
        "CLI",
        "--redirect-uri",
        "http://127.0.0.1/cb",
        "--scope",
        "contacts:read",
        "--public",
        "--workspace",
        "acme",
    ]);
    assert!(p.get("client_secret").is_none(), "public clients have no secret");
    assert_eq!(p["workspace"], "acme");

    // The secret is shown once: listing never shows it.
    let list = db.json(&["client", "list"]);
    assert_eq!(list["clients"].as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains("pcl_cs_"));

    assert_eq!(db.json(&["workspace", "list"])["workspaces"][0]["slug"], "acme");
    assert_eq!(db.json(&["user", "list"])["users"][0]["email"], "ada@example.com");

    // Human-readable output by default.
    let out = db.run(&["workspace", "list"]);
    assert!(String::from_utf8(out.stdout).unwrap().contains("acme"));
    let out = db.run(&[
        "client",
        "create",
        "--name",
        "Human",
        "--redirect-uri",
        "https://h.example/cb",
        "--scope",
        "contacts:read",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("client_secret: pcl_cs_") && text.contains("shown only once"), "{text}");
}

#[test]
fn bad_input_fails_with_one_line_and_changes_nothing() {
    let db = Db::new();
    db.json(&["workspace", "create", "acme"]);
    let out = db
        .run_stdin(&["user", "create", "--email", "ada@example.com", "--password-stdin"], "correct horse\n");
    assert!(out.status.success());
    db.json(&[
        "member",
        "add",
        "--workspace",
        "acme",
        "--email",
        "ada@example.com",
        "--permissions",
        "contacts:read",
    ]);
    let before = db.snapshot();

    let cases: &[(&[&str], &str)] = &[
        (&["workspace", "create", "acme"], "already exists"),
        (&["workspace", "create", "Not A Slug"], "not a valid slug"),
        (
            &[
                "member",
                "add",
                "--workspace",
                "nope",
                "--email",
                "ada@example.com",
                "--permissions",
                "contacts:read",
            ],
            "does not exist",
        ),
        (
            &[
                "member",
                "add",
                "--workspace",
                "acme",
                "--email",
                "nobody@example.com",
                "--permissions",
                "contacts:read",
            ],
            "does not exist",
        ),
        (
            &[
                "member",
                "add",
                "--workspace",
                "acme",
                "--email",
                "ada@example.com",
                "--permissions",
                "contacts:*",
            ],
            "wildcard",
        ),
        (
            &[
                "member",
                "add",
                "--workspace",
                "acme",
                "--email",
                "ada@example.com",
                "--permissions",
                "bogus:scope",
            ],
            "unknown scope",
        ),
        (
            &["client", "create", "--name", "X", "--redirect-uri", "not a uri", "--scope", "contacts:read"],
            "redirect URI",
        ),
        (
            &[
                "client",
                "create",
                "--name",
                "X",
                "--redirect-uri",
                "http://evil.example/cb",
                "--scope",
                "contacts:read",
            ],
            "loopback",
        ),
        (
            &[
                "client",
                "create",
                "--name",
                "X",
                "--redirect-uri",
                "https://a.example/cb#x",
                "--scope",
                "contacts:read",
            ],
            "fragment",
        ),
        (
            &[
                "client",
                "create",
                "--name",
                "X",
                "--redirect-uri",
                "https://a.example/cb",
                "--scope",
                "bogus:scope",
            ],
            "unknown scope",
        ),
        (
            &[
                "client",
                "create",
                "--name",
                "X",
                "--redirect-uri",
                "https://a.example/cb",
                "--scope",
                "keys:manage",
            ],
            "never be granted",
        ),
        (
            &[
                "client",
                "create",
                "--name",
                "X",
                "--redirect-uri",
                "https://a.example/cb",
                "--scope",
                "contacts:read",
                "--workspace",
                "nope",
            ],
            "does not exist",
        ),
        (
            &[
                "client",
                "create",
                "--name",
                "X",
                "--redirect-uri",
                "https://a.example/cb",
                "--scope",
                "contacts:read",
                "--grant-type",
                "password",
            ],
            "not supported",
        ),
        (&["client", "create", "--name", "X", "--scope", "contacts:read"], "redirect-uri"),
    ];
    for (args, needle) in cases {
        let err = db.fails(args);
        assert!(err.starts_with("error: "), "{err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // Duplicate email and a short password.
    for (email, pw, needle) in
        [("ADA@example.com", "correct horse", "already exists"), ("bob@example.com", "short", "at least 8")]
    {
        let out = db.run_stdin(&["user", "create", "--email", email, "--password-stdin"], pw);
        assert!(!out.status.success());
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim().lines().count(), 1);
        assert!(err.contains(needle), "{err}");
    }
    assert_eq!(db.snapshot(), before, "refused commands changed nothing");
}

#[test]
fn configuration_comes_from_env_and_file_with_flags_first() {
    let dir = tempfile::tempdir().unwrap();
    let from_env = format!("sqlite://{}", dir.path().join("env.db").display());
    let from_file = format!("sqlite://{}", dir.path().join("file.db").display());
    let from_flag = format!("sqlite://{}", dir.path().join("flag.db").display());
    let cfg = dir.path().join("portcullis.toml");
    std::fs::write(&cfg, format!("database_url = \"{from_file}\"\n")).unwrap();

    let run = |args: &[&str], env: Option<&str>| {
        let mut c = bin();
        if let Some(e) = env {
            c.env("PORTCULLIS_DATABASE_URL", e);
        }
        let out = c.args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["--config", cfg.to_str().unwrap(), "workspace", "create", "file"], None);
    assert!(dir.path().join("file.db").exists(), "file beats the default");
    run(&["--config", cfg.to_str().unwrap(), "workspace", "create", "env"], Some(&from_env));
    assert!(dir.path().join("env.db").exists(), "env beats the file");
    run(
        &["--config", cfg.to_str().unwrap(), "--database-url", &from_flag, "workspace", "create", "flag"],
        Some(&from_env),
    );
    assert!(dir.path().join("flag.db").exists(), "the flag beats env and file");

    std::fs::write(&cfg, "database_ur = \"typo\"\n").unwrap();
    let out = bin().args(["--config", cfg.to_str().unwrap(), "workspace", "list"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field"));
}

#[test]
fn serve_answers_healthz_logs_json_and_stops_on_sigterm() {
    let db = Db::new();
    let mut child = bin()
        .args(["--database-url", &db.url(), "serve", "--bind", "127.0.0.1:0"])
        .env("PORTCULLIS_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let addr = loop {
        let line = lines.next().expect("server exited early").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).expect("structured JSON log lines");
        if v["message"] == "portcullis listening" {
            assert_eq!(v["issuer"], format!("http://{}", v["addr"].as_str().unwrap()));
            break v["addr"].as_str().unwrap().to_owned();
        }
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let body = rt.block_on(async {
        reqwest::get(format!("http://{addr}/healthz")).await.unwrap().text().await.unwrap()
    });
    assert_eq!(body, r#"{"status":"ok"}"#);
    assert!(db.dir.path().join("cli.db").exists(), "the SQLite file is created on first start");

    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful shutdown exits 0: {status}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
}

#[test]
fn a_catalogue_file_replaces_the_builtin_scopes() {
    let db = Db::new();
    let file = db.dir.path().join("scopes.toml");
    std::fs::write(
        &file,
        "[[scope]]\nname = \"widgets:read\"\ndescription = \"See your widgets\"\n\n[[scope]]\nname = \"openid\"\ndescription = \"Sign you in\"\nidentity = true\n",
    )
    .unwrap();
    let cat = file.to_str().unwrap();
    let c = db.json(&[
        "--scope-catalogue",
        cat,
        "client",
        "create",
        "--name",
        "W",
        "--redirect-uri",
        "https://w.example/cb",
        "--scope",
        "widgets:read openid",
    ]);
    assert_eq!(c["scope"], "openid widgets:read");
    let err = {
        let out = db.run(&[
            "--scope-catalogue",
            cat,
            "client",
            "create",
            "--name",
            "W",
            "--redirect-uri",
            "https://w.example/cb",
            "--scope",
            "contacts:read",
        ]);
        assert!(!out.status.success());
        String::from_utf8(out.stderr).unwrap()
    };
    assert!(err.contains("unknown scope: contacts:read"), "{err}");

    std::fs::write(&file, "[[scope]]\nname = \"bad:*\"\ndescription = \"x\"\n").unwrap();
    let out = db.run(&["--scope-catalogue", cat, "workspace", "list"]);
    assert!(!out.status.success(), "an invalid catalogue is refused at start");
}

#[test]
fn lifecycle_commands_rotate_revoke_and_list() {
    let db = Db::new();
    db.json(&["workspace", "create", "acme"]);
    let c = db.json(&[
        "client",
        "create",
        "--name",
        "Sync",
        "--scope",
        "contacts:read",
        "--grant-type",
        "client_credentials",
        "--workspace",
        "acme",
    ]);
    let id = c["client_id"].as_str().unwrap().to_owned();
    let old = c["client_secret"].as_str().unwrap().to_owned();

    let r = db.json(&["client", "rotate-secret", &id, "--grace", "7d"]);
    assert!(r["client_secret"].as_str().unwrap().starts_with("pcl_cs_"));
    assert_ne!(r["client_secret"], old.as_str());
    assert!(r["previous_secret_expires_at"].is_string());
    assert!(db.fails(&["client", "rotate-secret", &id, "--grace", "31d"]).contains("30 days"));
    assert!(db.fails(&["client", "rotate-secret", "cl_nope"]).contains("does not exist"));

    let r = db.json(&["client", "revoke", &id]);
    assert!(r["revoked_at"].is_string());
    assert!(db.fails(&["client", "revoke", &id]).contains("already revoked"));

    // Rules for the new grant types.
    assert!(
        db.fails(&[
            "client",
            "create",
            "--name",
            "X",
            "--scope",
            "contacts:read",
            "--grant-type",
            "client_credentials"
        ])
        .contains("--workspace")
    );
    assert!(
        db.fails(&[
            "client",
            "create",
            "--name",
            "X",
            "--scope",
            "contacts:read",
            "--grant-type",
            "client_credentials",
            "--workspace",
            "acme",
            "--public"
        ])
        .contains("confidential")
    );
    assert!(
        db.fails(&[
            "client",
            "create",
            "--name",
            "X",
            "--redirect-uri",
            "https://a.example/cb",
            "--scope",
            "contacts:read",
            "--refresh-overlap",
            "61s"
        ])
        .contains("between 0 and 60")
    );
    let d = db.json(&[
        "client",
        "create",
        "--name",
        "CLI",
        "--scope",
        "contacts:read",
        "--public",
        "--grant-type",
        "urn:ietf:params:oauth:grant-type:device_code",
        "--grant-type",
        "refresh_token",
    ]);
    assert!(d.get("client_secret").is_none());

    assert_eq!(db.json(&["grant", "list"])["grants"], serde_json::json!([]));
    assert_eq!(db.json(&["grant", "list", "--workspace", "acme"])["grants"], serde_json::json!([]));
    assert!(db.fails(&["grant", "list", "--workspace", "nope"]).contains("does not exist"));
    assert!(db.fails(&["grant", "revoke", "grt_nope"]).contains("does not exist"));

    // Signing keys: rotating adds a published key that signs after the delay.
    let before = db.json(&["signing-key", "list"])["signing_keys"].as_array().unwrap().len();
    let k = db.json(&["signing-key", "rotate", "--activation-delay", "10m"]);
    assert!(k["kid"].as_str().unwrap().starts_with("sk_"));
    let keys = db.json(&["signing-key", "list"])["signing_keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), before + 1);
    assert_eq!(keys[0]["kid"], k["kid"]);
    assert_eq!(keys[0]["state"], "published");
}

#[test]
fn api_keys_bundles_service_tokens_and_trust_policies_from_the_cli() {
    let db = Db::new();
    db.json(&["workspace", "create", "acme"]);
    let k = db.json(&[
        "key",
        "create",
        "--workspace",
        "acme",
        "--name",
        "billing",
        "--scope",
        "contacts:read tokens:mint",
        "--allow-cidr",
        "10.0.0.0/8",
        "--allow-cidr",
        "2001:db8::/32",
        "--expires-in",
        "30d",
        "--rate-limit",
        "600/min",
        "--metadata",
        r#"{"owner":"billing"}"#,
    ]);
    let id = k["id"].as_str().unwrap().to_owned();
    let secret = k["secret"].as_str().unwrap().to_owned();
    assert!(id.starts_with("key_"));
    assert!(secret.starts_with("pcl_live_") && secret.len() == 47, "{secret}");
    assert_eq!(k["prefix"], secret[..13]);
    assert_eq!(k["scopes"], serde_json::json!(["contacts:read", "tokens:mint"]));
    assert_eq!(k["allowed_cidrs"], serde_json::json!(["10.0.0.0/8", "2001:db8::/32"]));
    assert_eq!(k["rate_limit"], "600/min");
    assert_eq!(k["metadata"]["owner"], "billing");
    assert!(k["expires_at"].is_string());

    // Shown once: list and show never print the secret.
    for args in [&["key", "list", "--workspace", "acme"][..], &["key", "show", &id]] {
        let out = db.run(args);
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(&id[..8]) || text.contains(&k["prefix"].as_str().unwrap()[..13]), "{text}");
        assert!(!text.contains(&secret[13..]), "{args:?} printed the secret");
    }
    let listed = db.json(&["key", "list", "--workspace", "acme"]);
    assert_eq!(listed["keys"][0]["id"], id.as_str());
    assert!(listed["keys"][0].get("secret").is_none());

    let r = db.json(&["key", "rotate", &id, "--grace", "7d"]);
    assert_eq!(r["id"], id.as_str());
    assert_ne!(r["secret"], secret.as_str());
    assert!(r["previous_secret_expires_at"].is_string());
    db.fails(&["key", "rotate", &id, "--grace", "31d"]);

    // Bad input: one line on stderr, nothing written.
    let before = db.json(&["key", "list", "--workspace", "acme"]);
    for scope in ["contacts:*", "nope:read", "*"] {
        let err = db.fails(&["key", "create", "--workspace", "acme", "--name", "x", "--scope", scope]);
        assert!(err.contains("scope") || err.contains('*'), "{err}");
    }
    db.fails(&[
        "key",
        "create",
        "--workspace",
        "acme",
        "--name",
        "x",
        "--scope",
        "contacts:read",
        "--allow-cidr",
        "10.0.0.0/40",
    ]);
    db.fails(&[
        "key",
        "create",
        "--workspace",
        "acme",
        "--name",
        "x",
        "--scope",
        "contacts:read",
        "--rate-limit",
        "fast",
    ]);
    db.fails(&["key", "create", "--workspace", "nope", "--name", "x", "--scope", "contacts:read"]);
    assert_eq!(db.json(&["key", "list", "--workspace", "acme"]), before);

    let b = db.json(&[
        "bundle",
        "create",
        "--workspace",
        "acme",
        "--name",
        "Support Read-only",
        "--scope",
        "contacts:read",
    ]);
    assert_eq!(b["scopes"], serde_json::json!(["contacts:read"]));
    db.fails(&[
        "bundle",
        "create",
        "--workspace",
        "acme",
        "--name",
        "Support Read-only",
        "--scope",
        "contacts:read",
    ]);
    let listed = db.json(&["bundle", "list", "--workspace", "acme"]);
    assert_eq!(listed["bundles"].as_array().unwrap().len(), 1);
    let from_bundle = db.json(&[
        "key",
        "create",
        "--workspace",
        "acme",
        "--name",
        "support",
        "--bundle",
        "Support Read-only",
    ]);
    assert_eq!(from_bundle["scopes"], serde_json::json!(["contacts:read"]));
    assert_eq!(from_bundle["bundle"], "Support Read-only");
    let c = db.json(&[
        "client",
        "create",
        "--name",
        "Worker",
        "--grant-type",
        "client_credentials",
        "--workspace",
        "acme",
        "--scope",
        "contacts:write",
        "--bundle",
        "Support Read-only",
    ]);
    assert_eq!(c["scope"], "contacts:read contacts:write");

    let t = db.json(&["token", "mint", "--workspace", "acme", "--scope", "contacts:read", "--ttl", "15m"]);
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 900);
    assert_eq!(t["scope"], "contacts:read");
    assert_eq!(t["access_token"].as_str().unwrap().split('.').count(), 3);
    let t =
        db.json(&["token", "mint", "--workspace", "acme", "--bundle", "Support Read-only", "--ttl", "60m"]);
    assert_eq!(t["expires_in"], 3600);
    for ttl in ["4m", "61m", "soon"] {
        db.fails(&["token", "mint", "--workspace", "acme", "--scope", "contacts:read", "--ttl", ttl]);
    }
    db.fails(&["token", "mint", "--workspace", "acme", "--scope", "contacts:*"]);

    let p = db.json(&[
        "trust-policy",
        "create",
        "--workspace",
        "acme",
        "--name",
        "deploys",
        "--issuer",
        "https://token.actions.githubusercontent.com",
        "--audience",
        "https://portcullis.example",
        "--subject",
        "repo:acme/app:ref:refs/heads/main",
        "--claim",
        "repository_owner=acme",
        "--scope",
        "contacts:read",
        "--max-ttl",
        "10m",
    ]);
    assert!(p["id"].as_str().unwrap().starts_with("tp_"));
    assert_eq!(p["claims"]["repository_owner"], "acme");
    assert_eq!(p["max_ttl_seconds"], 600);
    db.fails(&[
        "trust-policy",
        "create",
        "--workspace",
        "acme",
        "--name",
        "x",
        "--issuer",
        "http://ci.example",
        "--audience",
        "a",
        "--subject",
        "s",
        "--scope",
        "contacts:read",
    ]);
    db.fails(&[
        "trust-policy",
        "create",
        "--workspace",
        "acme",
        "--name",
        "x",
        "--issuer",
        "https://ci.example",
        "--audience",
        "a",
        "--subject",
        "*",
        "--scope",
        "contacts:read",
    ]);
    assert_eq!(
        db.json(&["trust-policy", "list", "--workspace", "acme"])["trust_policies"].as_array().unwrap().len(),
        1
    );
    db.json(&["trust-policy", "delete", p["id"].as_str().unwrap()]);

    let revoked = db.json(&["key", "revoke", &id]);
    assert_eq!(revoked["status"], "revoked");
    db.fails(&["key", "revoke", &id]);
}
