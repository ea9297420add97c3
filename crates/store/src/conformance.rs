//! The behavioural suite every storage backend must pass. Each backend's tests call
//! [`run_all`] with a fresh, empty store.
//!
//! The checks are about behaviour callers rely on (uniqueness, atomic outcomes, expiry filters),
//! not about how a backend does it.

use crate::*;
use portcullis_domain::*;
use time::{Duration, OffsetDateTime};

fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

/// Runs every check against `store`, which must be empty.
pub async fn run_all<S: Store>(store: S) {
    workspaces(&store).await;
    users_and_memberships(&store).await;
    clients(&store).await;
    registered_clients(&store).await;
    grants(&store).await;
    pending_authorizations(&store).await;
    codes_and_families(&store).await;
    concurrent_redemption_has_one_winner(&store).await;
    refresh_tokens(&store).await;
    refresh_rotation(&store).await;
    concurrent_rotation_has_one_winner(&store).await;
    grant_listing_and_revocation(&store).await;
    client_secret_rotation_and_revocation(&store).await;
    revoked_access_tokens(&store).await;
    device_codes(&store).await;
    signing_keys_and_secrets(&store).await;
    signing_key_rotation(&store).await;
    sessions(&store).await;
    api_keys(&store).await;
    bundles(&store).await;
    trust_policies(&store).await;
    audit_log(&store).await;
    audit_sinks(&store).await;
    documents(&store).await;
    // Last: a sweep deletes every other check's expired rows too.
    leases(&store).await;
    sweeps(&store).await;
    store.ping().await.expect("ping");
}

fn workspace(slug: &str) -> Workspace {
    Workspace {
        id: WorkspaceId::generate(),
        slug: Slug::parse(slug).unwrap(),
        name: format!("{slug} Inc"),
        created_at: t0(),
    }
}

fn user(email: &str) -> User {
    User {
        id: UserId::generate(),
        email: Email::parse(email).unwrap(),
        name: Some("Ada".into()),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        created_at: t0(),
    }
}

fn client(ws: Option<&WorkspaceId>) -> Client {
    Client {
        id: ClientId::generate(),
        name: "App".into(),
        secret_hash: Some(TokenHash::of("pcl_cs_x")),
        redirect_uris: vec![
            RedirectUri::parse("https://app.example/cb").unwrap(),
            RedirectUri::parse("http://127.0.0.1/cb").unwrap(),
        ],
        scopes: ScopeSet::parse("contacts:read openid").unwrap(),
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        workspace_id: ws.cloned(),
        created_at: t0(),
        refresh_overlap: Duration::seconds(10),
        previous_secret_hash: None,
        previous_secret_expires_at: None,
        revoked_at: None,
        origin: ClientOrigin::Admin,
        registration: None,
        last_used_at: None,
        require_pushed_requests: false,
        dpop_bound: true,
    }
}

/// A workspace, user and client that other checks hang records on.
async fn fixture<S: Store>(s: &S, tag: &str) -> (Workspace, User, Client) {
    let w = workspace(&format!("fx-{tag}"));
    s.insert_workspace(&w).await.unwrap();
    let u = user(&format!("{tag}@fixture.example"));
    s.insert_user(&u).await.unwrap();
    let c = client(None);
    s.insert_client(&c).await.unwrap();
    (w, u, c)
}

async fn workspaces<S: Store>(s: &S) {
    let a = workspace("acme");
    s.insert_workspace(&a).await.unwrap();
    assert_eq!(s.workspace_by_slug("acme").await.unwrap(), Some(a.clone()));
    assert_eq!(s.workspace_by_id(&a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(s.workspace_by_slug("nope").await.unwrap(), None);

    let dup = workspace("acme");
    assert!(matches!(s.insert_workspace(&dup).await, Err(StoreError::Duplicate("slug"))));
    assert_eq!(s.workspace_by_id(&dup.id).await.unwrap(), None, "a refused insert writes nothing");

    s.insert_workspace(&workspace("beta")).await.unwrap();
    let slugs: Vec<_> = s.list_workspaces().await.unwrap().into_iter().map(|w| w.slug.to_string()).collect();
    assert_eq!(slugs, ["acme", "beta"]);
}

async fn users_and_memberships<S: Store>(s: &S) {
    let u = user("ada@example.com");
    s.insert_user(&u).await.unwrap();
    let found = s.user_by_email(&Email::parse("ADA@example.com").unwrap()).await.unwrap();
    assert_eq!(found, Some(u.clone()));
    assert_eq!(s.user_by_id(&u.id).await.unwrap(), Some(u.clone()));
    assert!(matches!(s.insert_user(&user("ada@example.com")).await, Err(StoreError::Duplicate("email"))));

    let ws = s.workspace_by_slug("acme").await.unwrap().unwrap();
    let mut m = Membership {
        workspace_id: ws.id.clone(),
        user_id: u.id.clone(),
        permissions: ScopeSet::parse("contacts:read contacts:write").unwrap(),
        created_at: t0(),
        updated_at: t0(),
    };
    assert_eq!(s.put_membership(&m).await.unwrap(), MembershipWrite::Created);
    m.permissions = ScopeSet::parse("contacts:read").unwrap();
    m.updated_at = t0() + Duration::seconds(5);
    assert_eq!(s.put_membership(&m).await.unwrap(), MembershipWrite::Updated);
    let stored = s.membership(&ws.id, &u.id).await.unwrap().unwrap();
    assert_eq!(stored.permissions.to_string(), "contacts:read");
    assert_eq!(stored.created_at, t0(), "an update keeps created_at");

    let beta = s.workspace_by_slug("beta").await.unwrap().unwrap();
    m.workspace_id = beta.id.clone();
    s.put_membership(&m).await.unwrap();
    let of_user = s.memberships_of_user(&u.id).await.unwrap();
    let slugs: Vec<_> = of_user.iter().map(|(w, _)| w.slug.as_str()).collect();
    assert_eq!(slugs, ["acme", "beta"]);
    let members = s.members_of_workspace(&ws.id).await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].0.id, u.id);

    assert!(s.remove_membership(&beta.id, &u.id).await.unwrap());
    assert!(!s.remove_membership(&beta.id, &u.id).await.unwrap());
    assert_eq!(s.membership(&beta.id, &u.id).await.unwrap(), None);

    let ghost = Membership { user_id: UserId::generate(), ..m };
    assert!(s.put_membership(&ghost).await.is_err(), "membership of an unknown user is refused");
}

async fn clients<S: Store>(s: &S) {
    let ws = s.workspace_by_slug("acme").await.unwrap().unwrap();
    let c = client(Some(&ws.id));
    s.insert_client(&c).await.unwrap();
    assert_eq!(s.client_by_id(&c.id).await.unwrap(), Some(c.clone()));
    let public = Client { id: ClientId::generate(), secret_hash: None, workspace_id: None, ..c.clone() };
    s.insert_client(&public).await.unwrap();
    let back = s.client_by_id(&public.id).await.unwrap().unwrap();
    assert!(back.is_public());
    assert!(back.allows_grant("refresh_token"));
    assert!(!back.allows_grant("client_credentials"));
    assert!(matches!(s.insert_client(&c).await, Err(StoreError::Duplicate(_))));
    assert!(s.list_clients().await.unwrap().len() >= 2);
    let orphan = Client { id: ClientId::generate(), workspace_id: Some(WorkspaceId::generate()), ..c };
    assert!(matches!(s.insert_client(&orphan).await, Err(StoreError::MissingReference)));
}

async fn registered_clients<S: Store>(s: &S) {
    let dynamic = |fp: &str, at| Client {
        id: ClientId::generate(),
        secret_hash: None,
        workspace_id: None,
        created_at: at,
        origin: ClientOrigin::Dynamic,
        require_pushed_requests: true,
        registration: Some(Registration {
            metadata: r#"{"client_name":"App"}"#.into(),
            token_hash: Some(TokenHash::of("pcl_rat_1")),
            registered_from: Some("203.0.113.7".into()),
            fingerprint: Some(fp.into()),
            refresh_after: None,
        }),
        ..client(None)
    };
    let a = dynamic("fp-a", t0());
    s.insert_client(&a).await.unwrap();
    assert_eq!(s.client_by_id(&a.id).await.unwrap(), Some(a.clone()), "round trip");
    assert_eq!(s.client_by_fingerprint("fp-a", t0() - Duration::minutes(10)).await.unwrap(), Some(a.clone()));
    assert_eq!(s.client_by_fingerprint("fp-a", t0() + Duration::seconds(1)).await.unwrap(), None, "too old");
    assert_eq!(s.client_by_fingerprint("fp-b", t0() - Duration::minutes(10)).await.unwrap(), None);

    // An update replaces the registered details and the registration token.
    let mut changed = a.clone();
    changed.name = "App 2".into();
    changed.scopes = ScopeSet::parse("contacts:read").unwrap();
    changed.registration.as_mut().unwrap().token_hash = Some(TokenHash::of("pcl_rat_2"));
    changed.registration.as_mut().unwrap().metadata = r#"{"client_name":"App 2"}"#.into();
    assert!(s.update_registered_client(&changed).await.unwrap());
    assert_eq!(s.client_by_id(&a.id).await.unwrap(), Some(changed.clone()));

    // Used clients record it (to the hour); unused old dynamic clients are reclaimed, nothing else.
    s.touch_client(&a.id, t0() + Duration::hours(1)).await.unwrap();
    s.touch_client(&a.id, t0() + Duration::hours(1) + Duration::minutes(5)).await.unwrap();
    assert_eq!(s.client_by_id(&a.id).await.unwrap().unwrap().last_used_at, Some(t0() + Duration::hours(1)));
    let unused = dynamic("fp-c", t0());
    s.insert_client(&unused).await.unwrap();
    let recent = dynamic("fp-d", t0() + Duration::days(40));
    s.insert_client(&recent).await.unwrap();
    let admin = Client { id: ClientId::generate(), workspace_id: None, ..client(None) };
    s.insert_client(&admin).await.unwrap();
    let cutoff = t0() + Duration::days(30);
    assert_eq!(s.reclaim_unused_clients(cutoff).await.unwrap(), 1);
    assert_eq!(s.client_by_id(&unused.id).await.unwrap(), None);
    for kept in [&a.id, &recent.id, &admin.id] {
        assert!(s.client_by_id(kept).await.unwrap().is_some());
    }
    assert!(s.revoke_client(&a.id, t0()).await.unwrap());
    assert!(!s.update_registered_client(&changed).await.unwrap(), "a revoked client stays as it was");
    assert_eq!(s.client_by_fingerprint("fp-a", t0() - Duration::minutes(10)).await.unwrap(), None);
}

async fn grants<S: Store>(s: &S) {
    let (w, u, c) = fixture(s, "grants").await;
    let g = Grant {
        id: GrantId::generate(),
        user_id: u.id.clone(),
        client_id: c.id.clone(),
        workspace_id: w.id.clone(),
        scopes: ScopeSet::parse("contacts:read").unwrap(),
        created_at: t0(),
        updated_at: t0(),
        revoked_at: None,
    };
    let first = s.upsert_grant(&g).await.unwrap();
    assert_eq!(first, g);
    let again = Grant {
        id: GrantId::generate(),
        scopes: ScopeSet::parse("contacts:read openid").unwrap(),
        updated_at: t0() + Duration::seconds(9),
        ..g.clone()
    };
    let merged = s.upsert_grant(&again).await.unwrap();
    assert_eq!(merged.id, g.id, "one active grant per user, client and workspace");
    assert_eq!(merged.scopes.to_string(), "contacts:read openid");
    assert_eq!(merged.created_at, t0());
    assert_eq!(s.grant_by_id(&g.id).await.unwrap(), Some(merged));
    assert_eq!(s.grant_by_id(&again.id).await.unwrap(), None);

    let other_ws = workspace("grants-two");
    s.insert_workspace(&other_ws).await.unwrap();
    let second = Grant { id: GrantId::generate(), workspace_id: other_ws.id.clone(), ..g.clone() };
    assert_eq!(s.upsert_grant(&second).await.unwrap().id, second.id);
    assert_eq!(s.active_grants(&u.id, &c.id).await.unwrap().len(), 2);
}

async fn pending_authorizations<S: Store>(s: &S) {
    let p = PendingAuthorization {
        id: "req-1".into(),
        payload: r#"{"a":1}"#.into(),
        created_at: t0(),
        expires_at: t0() + Duration::minutes(10),
    };
    s.insert_pending(&p).await.unwrap();
    assert_eq!(s.pending("req-1", t0()).await.unwrap(), Some(p.clone()));
    assert_eq!(s.pending("req-1", t0() + Duration::minutes(10)).await.unwrap(), None, "expired");
    assert_eq!(s.take_pending("req-1", t0() + Duration::minutes(11)).await.unwrap(), None);
    assert_eq!(s.take_pending("req-1", t0()).await.unwrap(), Some(p));
    assert_eq!(s.take_pending("req-1", t0()).await.unwrap(), None, "single use");
}

/// An active grant of `u` to `c` in `w`, and a fresh family under it.
async fn grant_and_family<S: Store>(s: &S, w: &Workspace, u: &User, c: &Client) -> (Grant, TokenFamily) {
    let g = s
        .upsert_grant(&Grant {
            id: GrantId::generate(),
            user_id: u.id.clone(),
            client_id: c.id.clone(),
            workspace_id: w.id.clone(),
            scopes: ScopeSet::parse("contacts:read").unwrap(),
            created_at: t0(),
            updated_at: t0(),
            revoked_at: None,
        })
        .await
        .unwrap();
    let family = TokenFamily {
        id: FamilyId::generate(),
        client_id: c.id.clone(),
        user_id: Some(u.id.clone()),
        workspace_id: w.id.clone(),
        grant_id: Some(g.id.clone()),
        created_at: t0(),
        expires_at: t0() + Duration::days(90),
        revoked_at: None,
        revoked_reason: None,
        resources: vec!["https://as.example/mcp".into(), "https://as.example/api".into()],
    };
    (g, family)
}

async fn code_fixture<S: Store>(s: &S, tag: &str) -> (AuthCode, TokenFamily) {
    let (w, u, c) = fixture(s, tag).await;
    let (g, family) = grant_and_family(s, &w, &u, &c).await;
    let code = AuthCode {
        hash: TokenHash::of(&format!("pcl_ac_{tag}")),
        client_id: c.id,
        user_id: u.id,
        workspace_id: w.id,
        grant_id: g.id,
        family_id: family.id.clone(),
        redirect_uri: "https://app.example/cb".into(),
        redirect_uri_explicit: true,
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        scopes: ScopeSet::parse("contacts:read").unwrap(),
        nonce: Some("n-0S6_WzA2Mj".into()),
        auth_time: t0(),
        created_at: t0(),
        expires_at: t0() + Duration::seconds(60),
        redeemed_at: None,
        dpop_jkt: Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs".into()),
    };
    s.insert_code(&code, &family).await.unwrap();
    (code, family)
}

/// What a request that matches `code` in every binding presents.
fn check_for(code: &AuthCode) -> CodeCheck {
    CodeCheck {
        client_id: code.client_id.clone(),
        code_challenge: code.code_challenge.clone(),
        redirect_uri: Some(code.redirect_uri.clone()),
        dpop_jkt: code.dpop_jkt.clone(),
    }
}

async fn codes_and_families<S: Store>(s: &S) {
    let (code, family) = code_fixture(s, "codes").await;
    assert_eq!(s.code_by_hash(&code.hash).await.unwrap(), Some(code.clone()));
    assert_eq!(s.family(&family.id).await.unwrap(), Some(family.clone()));

    let later = t0() + Duration::seconds(3);
    let good = check_for(&code);
    // Each binding that does not match refuses the request and leaves the code unused.
    let refusals = [
        CodeCheck { client_id: ClientId::generate(), ..good.clone() },
        CodeCheck { code_challenge: "x".repeat(43), ..good.clone() },
        CodeCheck { redirect_uri: None, ..good.clone() },
        CodeCheck { redirect_uri: Some("https://app.example/other".into()), ..good.clone() },
        CodeCheck { dpop_jkt: None, ..good.clone() },
        CodeCheck { dpop_jkt: Some("another-key".into()), ..good.clone() },
    ];
    for check in &refusals {
        assert_eq!(
            s.redeem_code(&code.hash, later, check).await.unwrap(),
            CodeRedemption::Refused,
            "{check:?}"
        );
    }
    assert_eq!(
        s.redeem_code(&code.hash, code.expires_at, &good).await.unwrap(),
        CodeRedemption::Refused,
        "an expired code is refused"
    );
    assert_eq!(s.code_by_hash(&code.hash).await.unwrap().unwrap().redeemed_at, None, "still unused");

    match s.redeem_code(&code.hash, later, &good).await.unwrap() {
        CodeRedemption::Redeemed(c) => assert_eq!(c.redeemed_at, Some(later)),
        other => panic!("expected Redeemed, got {other:?}"),
    }
    assert_eq!(
        s.redeem_code(&code.hash, later, &good).await.unwrap(),
        CodeRedemption::AlreadyRedeemed { family: family.id.clone() }
    );
    assert_eq!(
        s.redeem_code(&code.hash, later, &refusals[0]).await.unwrap(),
        CodeRedemption::AlreadyRedeemed { family: family.id.clone() },
        "a used code is a replay whoever presents it"
    );
    assert_eq!(
        s.redeem_code(&TokenHash::of("unknown"), later, &good).await.unwrap(),
        CodeRedemption::NotFound
    );

    // What redemption reads next, in one statement.
    let state = s.family_state(&family.id).await.unwrap().unwrap();
    assert_eq!(state.family, family);
    assert_eq!(state.grant_active, Some(true));
    assert_eq!(state.user.as_ref().map(|u| &u.id), Some(&code.user_id));
    assert_eq!(
        state.permissions,
        s.membership(&code.workspace_id, &code.user_id).await.unwrap().map(|m| m.permissions)
    );
    assert_eq!(s.family_state(&FamilyId::generate()).await.unwrap(), None);

    assert!(s.revoke_family(&family.id, "code_replay", later).await.unwrap());
    assert!(!s.revoke_family(&family.id, "again", later).await.unwrap(), "revoking twice is a no-op");
    let revoked = s.family(&family.id).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(later));
    assert_eq!(revoked.revoked_reason.as_deref(), Some("code_replay"));
    assert!(!s.revoke_family(&FamilyId::generate(), "x", later).await.unwrap());

    // A code whose family cannot be stored is not stored either.
    let (mut bad, mut fam) = code_fixture(s, "codes-atomic").await;
    bad.hash = TokenHash::of("pcl_ac_atomic");
    fam.client_id = ClientId::generate();
    bad.family_id = FamilyId::generate();
    fam.id = bad.family_id.clone();
    assert!(s.insert_code(&bad, &fam).await.is_err());
    assert_eq!(s.code_by_hash(&bad.hash).await.unwrap(), None);
}

async fn concurrent_redemption_has_one_winner<S: Store>(s: &S) {
    let (code, _) = code_fixture(s, "race").await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        let (h, check) = (code.hash.clone(), check_for(&code));
        tasks.push(tokio::spawn(async move { s.redeem_code(&h, t0(), &check).await.unwrap() }));
    }
    let mut winners = 0;
    for t in tasks {
        match t.await.unwrap() {
            CodeRedemption::Redeemed(_) => winners += 1,
            CodeRedemption::AlreadyRedeemed { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners, 1, "exactly one concurrent redemption wins");
}

async fn refresh_tokens<S: Store>(s: &S) {
    let (code, family) = code_fixture(s, "refresh").await;
    let t = RefreshToken {
        hash: TokenHash::of("pcl_rt_1"),
        family_id: family.id,
        client_id: code.client_id,
        scopes: code.scopes,
        created_at: t0(),
        expires_at: t0() + Duration::days(30),
        consumed_at: None,
        successor_hash: None,
        successor_sealed: None,
        dpop_jkt: Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs".into()),
    };
    s.insert_refresh_token(&t).await.unwrap();
    assert_eq!(s.refresh_token(&t.hash).await.unwrap(), Some(t.clone()));
    assert!(s.insert_refresh_token(&t).await.is_err(), "hashes are unique");
    assert_eq!(s.refresh_token(&TokenHash::of("nope")).await.unwrap(), None);
}

async fn signing_keys_and_secrets<S: Store>(s: &S) {
    let k1 = SigningKey {
        kid: KeyId::generate(),
        alg: "ES256".into(),
        private_key: "sealed".into(),
        public_jwk: "{}".into(),
        created_at: t0(),
        active_from: t0(),
        retired_at: None,
        generation: 1,
    };
    let k2 = SigningKey {
        kid: KeyId::generate(),
        created_at: t0() + Duration::hours(1),
        generation: 2,
        ..k1.clone()
    };
    s.insert_signing_key(&k1).await.unwrap();
    s.insert_signing_key(&k2).await.unwrap();
    let keys = s.signing_keys().await.unwrap();
    assert_eq!(keys.iter().map(|k| &k.kid).collect::<Vec<_>>(), [&k2.kid, &k1.kid], "newest first");
    assert!(matches!(s.insert_signing_key(&k1).await, Err(StoreError::Duplicate(_))));
    let same_generation = SigningKey { kid: KeyId::generate(), ..k2.clone() };
    assert!(
        matches!(s.insert_signing_key(&same_generation).await, Err(StoreError::Duplicate(_))),
        "two first keys created at once by two replicas: one wins"
    );

    assert_eq!(s.server_secret("csrf", "first", t0()).await.unwrap(), "first");
    assert_eq!(s.server_secret("csrf", "second", t0()).await.unwrap(), "first", "first writer wins");
}

async fn sessions<S: Store>(s: &S) {
    let (_, u, _) = fixture(s, "sessions").await;
    let sess = Session {
        hash: TokenHash::of("pcl_ss_1"),
        user_id: u.id,
        auth_time: t0(),
        created_at: t0(),
        expires_at: t0() + Duration::hours(8),
    };
    s.insert_session(&sess).await.unwrap();
    assert_eq!(s.session(&sess.hash, t0()).await.unwrap(), Some(sess.clone()));
    assert_eq!(s.session(&sess.hash, t0() + Duration::hours(8)).await.unwrap(), None, "expired");
    s.delete_session(&sess.hash).await.unwrap();
    assert_eq!(s.session(&sess.hash, t0()).await.unwrap(), None);
}

fn refresh_row(family: &TokenFamily, secret: &str) -> RefreshToken {
    RefreshToken {
        hash: TokenHash::of(secret),
        family_id: family.id.clone(),
        client_id: family.client_id.clone(),
        scopes: ScopeSet::parse("contacts:read").unwrap(),
        created_at: t0(),
        expires_at: t0() + Duration::days(30),
        consumed_at: None,
        successor_hash: None,
        successor_sealed: None,
        dpop_jkt: None,
    }
}

async fn refresh_rotation<S: Store>(s: &S) {
    let (_, family) = code_fixture(s, "rotation").await;
    let r0 = refresh_row(&family, "pcl_rt_r0");
    s.insert_refresh_token(&r0).await.unwrap();
    let r1 = refresh_row(&family, "pcl_rt_r1");
    let later = t0() + Duration::seconds(5);
    assert_eq!(
        s.rotate_refresh(&r0.hash, later, &r1, Some("sealed")).await.unwrap(),
        RefreshRotation::Rotated
    );
    let stored = s.refresh_token(&r0.hash).await.unwrap().unwrap();
    assert_eq!(stored.consumed_at, Some(later));
    assert_eq!(stored.successor_hash, Some(r1.hash.clone()));
    assert_eq!(stored.successor_sealed.as_deref(), Some("sealed"));
    assert_eq!(s.refresh_token(&r1.hash).await.unwrap(), Some(r1.clone()), "the successor is stored");

    // A second rotation of r0 loses, reports the row, and stores nothing.
    let r1b = refresh_row(&family, "pcl_rt_r1b");
    match s.rotate_refresh(&r0.hash, later, &r1b, None).await.unwrap() {
        RefreshRotation::AlreadyConsumed(t) => assert_eq!(t.successor_hash, Some(r1.hash.clone())),
        other => panic!("expected AlreadyConsumed, got {other:?}"),
    }
    assert_eq!(s.refresh_token(&r1b.hash).await.unwrap(), None);
    assert_eq!(
        s.rotate_refresh(&TokenHash::of("nope"), later, &r1b, None).await.unwrap(),
        RefreshRotation::NotFound
    );
}

async fn concurrent_rotation_has_one_winner<S: Store>(s: &S) {
    let (_, family) = code_fixture(s, "rotation-race").await;
    let r0 = refresh_row(&family, "pcl_rt_race0");
    s.insert_refresh_token(&r0).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        let h = r0.hash.clone();
        let next = refresh_row(&family, &format!("pcl_rt_race_next_{i}"));
        tasks.push(tokio::spawn(async move { s.rotate_refresh(&h, t0(), &next, None).await.unwrap() }));
    }
    let mut winners = 0;
    for t in tasks {
        if t.await.unwrap() == RefreshRotation::Rotated {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one concurrent rotation wins");
}

async fn grant_listing_and_revocation<S: Store>(s: &S) {
    let (code, family) = code_fixture(s, "grant-revoke").await;
    let all = s
        .list_grants(&GrantFilter { client_id: Some(code.client_id.clone()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    let by_ws = s
        .list_grants(&GrantFilter { workspace_id: Some(code.workspace_id.clone()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(by_ws.len(), 1);
    let none = s
        .list_grants(&GrantFilter { workspace_id: Some(WorkspaceId::generate()), ..Default::default() })
        .await
        .unwrap();
    assert!(none.is_empty());

    assert!(s.revoke_grant(&code.grant_id, t0()).await.unwrap());
    assert!(!s.revoke_grant(&code.grant_id, t0()).await.unwrap());
    let f = s.family(&family.id).await.unwrap().unwrap();
    assert_eq!(f.revoked_at, Some(t0()), "revoking a grant revokes its families");
    assert_eq!(f.revoked_reason.as_deref(), Some("grant_revoked"));
    let active = s
        .list_grants(&GrantFilter { client_id: Some(code.client_id.clone()), ..Default::default() })
        .await
        .unwrap();
    assert!(active.is_empty());
    let with_revoked = s
        .list_grants(&GrantFilter {
            client_id: Some(code.client_id),
            include_revoked: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(with_revoked.len(), 1);
}

async fn client_secret_rotation_and_revocation<S: Store>(s: &S) {
    let c = client(None);
    s.insert_client(&c).await.unwrap();
    let new = TokenHash::of("pcl_cs_new");
    let until = t0() + Duration::days(7);
    assert!(s.rotate_client_secret(&c.id, &new, until).await.unwrap());
    let back = s.client_by_id(&c.id).await.unwrap().unwrap();
    assert_eq!(back.secret_hash, Some(new));
    assert_eq!(back.previous_secret_hash, c.secret_hash);
    assert_eq!(back.previous_secret_expires_at, Some(until));
    assert_eq!(back.refresh_overlap, Duration::seconds(10));

    let public = Client { id: ClientId::generate(), secret_hash: None, ..c.clone() };
    s.insert_client(&public).await.unwrap();
    assert!(
        !s.rotate_client_secret(&public.id, &TokenHash::of("x"), until).await.unwrap(),
        "public clients have no secret"
    );

    assert!(s.revoke_client(&c.id, t0()).await.unwrap());
    assert!(!s.revoke_client(&c.id, t0()).await.unwrap());
    assert!(s.client_by_id(&c.id).await.unwrap().unwrap().is_revoked());
    assert!(
        !s.rotate_client_secret(&c.id, &TokenHash::of("y"), until).await.unwrap(),
        "revoked clients stay revoked"
    );
}

async fn revoked_access_tokens<S: Store>(s: &S) {
    let c = client(None);
    s.insert_client(&c).await.unwrap();
    assert!(!s.access_token_revoked("jti-1").await.unwrap());
    s.revoke_access_token("jti-1", &c.id, t0() + Duration::minutes(15), t0()).await.unwrap();
    s.revoke_access_token("jti-1", &c.id, t0() + Duration::minutes(15), t0()).await.unwrap();
    assert!(s.access_token_revoked("jti-1").await.unwrap());
}

async fn device_codes<S: Store>(s: &S) {
    let (w, u, c) = fixture(s, "device").await;
    let dc = DeviceCode {
        hash: TokenHash::of("pcl_dc_1"),
        user_code: "WDJBMJHT".into(),
        client_id: c.id.clone(),
        scopes: ScopeSet::parse("contacts:read").unwrap(),
        status: DeviceStatus::Pending,
        interval: 5,
        last_polled_at: None,
        created_at: t0(),
        expires_at: t0() + Duration::minutes(10),
        resources: vec!["https://as.example/mcp".into()],
        approval: None,
    };
    s.insert_device_code(&dc).await.unwrap();
    let dup = DeviceCode { hash: TokenHash::of("pcl_dc_2"), ..dc.clone() };
    assert!(matches!(s.insert_device_code(&dup).await, Err(StoreError::Duplicate("user_code"))));

    assert_eq!(s.pending_device_by_user_code("WDJBMJHT", t0()).await.unwrap(), Some(dc.clone()));
    assert_eq!(s.pending_device_by_user_code("WDJBMJHT", t0() + Duration::minutes(10)).await.unwrap(), None);

    // Polls: the first is fine, one 2 s later is too fast (interval grows to 10), one 11 s after
    // that is fine again.
    let (d, fast) = s.poll_device(&dc.hash, t0()).await.unwrap().unwrap();
    assert!(!fast);
    assert_eq!(d.interval, 5);
    let (d, fast) = s.poll_device(&dc.hash, t0() + Duration::seconds(2)).await.unwrap().unwrap();
    assert!(fast);
    assert_eq!(d.interval, 10);
    let (_, fast) = s.poll_device(&dc.hash, t0() + Duration::seconds(13)).await.unwrap().unwrap();
    assert!(!fast);
    assert_eq!(s.poll_device(&TokenHash::of("nope"), t0()).await.unwrap(), None);

    // Approve once (with its family), then consume once.
    let (grant, family) = grant_and_family(s, &w, &u, &c).await;
    let approval = DeviceApproval {
        user_id: u.id.clone(),
        workspace_id: w.id.clone(),
        grant_id: grant.id.clone(),
        family_id: family.id.clone(),
        scopes: dc.scopes.clone(),
        auth_time: t0(),
    };
    assert!(s.approve_device("WDJBMJHT", &approval, &family, t0()).await.unwrap());
    let other_family = TokenFamily { id: FamilyId::generate(), ..family.clone() };
    assert!(!s.approve_device("WDJBMJHT", &approval, &other_family, t0()).await.unwrap(), "decided once");
    assert_eq!(s.family(&other_family.id).await.unwrap(), None, "a refused approval stores nothing");
    assert!(!s.deny_device("WDJBMJHT", t0()).await.unwrap());
    let (d, _) = s.poll_device(&dc.hash, t0() + Duration::seconds(60)).await.unwrap().unwrap();
    assert_eq!(d.status, DeviceStatus::Approved);
    assert_eq!(d.approval, Some(approval));
    assert!(s.consume_device(&dc.hash, t0()).await.unwrap());
    assert!(!s.consume_device(&dc.hash, t0()).await.unwrap(), "consumed once");

    let denied = DeviceCode { hash: TokenHash::of("pcl_dc_3"), user_code: "BCDFGHJK".into(), ..dc.clone() };
    s.insert_device_code(&denied).await.unwrap();
    assert!(s.deny_device("BCDFGHJK", t0()).await.unwrap());
    assert!(!s.consume_device(&denied.hash, t0()).await.unwrap());

    assert_eq!(s.user_code_failures_since(&u.id, t0()).await.unwrap(), 0);
    s.record_user_code_failure(&u.id, t0()).await.unwrap();
    s.record_user_code_failure(&u.id, t0() + Duration::minutes(20)).await.unwrap();
    assert_eq!(s.user_code_failures_since(&u.id, t0()).await.unwrap(), 2);
    assert_eq!(s.user_code_failures_since(&u.id, t0() + Duration::minutes(5)).await.unwrap(), 1);
}

async fn signing_key_rotation<S: Store>(s: &S) {
    let before = s.signing_keys().await.unwrap();
    let next = SigningKey {
        kid: KeyId::generate(),
        alg: "ES256".into(),
        private_key: "sealed".into(),
        public_jwk: "{}".into(),
        created_at: t0() + Duration::days(1),
        active_from: t0() + Duration::days(1) + Duration::minutes(10),
        retired_at: None,
        generation: before.iter().map(|k| k.generation).max().unwrap_or(0) + 1,
    };
    let retire_at = next.active_from + Duration::minutes(15);
    s.rotate_signing_key(&next, retire_at).await.unwrap();
    let after = s.signing_keys().await.unwrap();
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(after[0].kid, next.kid);
    assert_eq!(after[0].generation, next.generation);
    assert_eq!(after[0].retired_at, None, "the new key is not retired");
    assert!(after[1..].iter().all(|k| k.retired_at == Some(retire_at)));

    // Another replica rotating from the same generation at the same moment loses, and changes
    // nothing: no key is added and no retirement moves.
    let rival = SigningKey {
        kid: KeyId::generate(),
        created_at: next.created_at + Duration::seconds(1),
        ..next.clone()
    };
    let later = retire_at + Duration::hours(1);
    assert!(matches!(s.rotate_signing_key(&rival, later).await, Err(StoreError::Duplicate(_))));
    assert_eq!(s.signing_keys().await.unwrap(), after, "the losing rotation left no trace");
}

fn api_key(ws: &WorkspaceId, secret: &str) -> ApiKey {
    ApiKey {
        id: ApiKeyId::generate(),
        workspace_id: ws.clone(),
        name: "backend".into(),
        description: Some("the billing backend".into()),
        metadata: Some(r#"{"owner":"billing"}"#.into()),
        scopes: ScopeSet::parse("invoices:read invoices:write").unwrap(),
        allowed_cidrs: vec![
            api_key::parse_cidr("10.0.0.0/8").unwrap(),
            api_key::parse_cidr("2001:db8::/32").unwrap(),
        ],
        rate_limit: Some(RateLimit::parse("600/min").unwrap()),
        environment: KeyEnvironment::Live,
        prefix: "pcl_live_AbCd".into(),
        secret_hash: TokenHash::of(secret),
        previous_secret_hash: None,
        previous_secret_expires_at: None,
        bundle: None,
        created_at: t0(),
        expires_at: Some(t0() + Duration::days(90)),
        rotated_at: None,
        revoked_at: None,
        last_used_at: None,
        last_used_ip: None,
    }
}

async fn api_keys<S: Store>(s: &S) {
    let w = workspace("keys");
    s.insert_workspace(&w).await.unwrap();
    let k = api_key(&w.id, "secret-1");
    s.insert_api_key(&k).await.unwrap();
    assert_eq!(s.api_key_by_hash(&TokenHash::of("secret-1")).await.unwrap(), Some(k.clone()));
    assert_eq!(s.api_key_by_id(&k.id).await.unwrap(), Some(k.clone()));
    assert_eq!(s.api_key_by_hash(&TokenHash::of("nope")).await.unwrap(), None);
    assert!(matches!(
        s.insert_api_key(&ApiKey { id: ApiKeyId::generate(), ..k.clone() }).await,
        Err(StoreError::Duplicate(_))
    ));
    let orphan = api_key(&WorkspaceId::generate(), "secret-x");
    assert!(s.insert_api_key(&orphan).await.is_err(), "a key needs an existing workspace");

    // Rotation with grace: both hashes find the key; the previous one carries its deadline.
    let until = t0() + Duration::days(7);
    assert!(
        s.rotate_api_key(&k.id, &TokenHash::of("secret-2"), "pcl_live_EfGh", Some(until), t0())
            .await
            .unwrap()
    );
    let by_old = s.api_key_by_hash(&TokenHash::of("secret-1")).await.unwrap().unwrap();
    let by_new = s.api_key_by_hash(&TokenHash::of("secret-2")).await.unwrap().unwrap();
    assert_eq!(by_old, by_new);
    assert_eq!(by_new.id, k.id, "rotation keeps the id");
    assert_eq!(by_new.prefix, "pcl_live_EfGh");
    assert_eq!(by_new.previous_secret_expires_at, Some(until));
    assert_eq!(by_new.rotated_at, Some(t0()));
    // Rotation without grace drops the previous secret at once.
    assert!(s.rotate_api_key(&k.id, &TokenHash::of("secret-3"), "pcl_live_IjKl", None, t0()).await.unwrap());
    assert_eq!(s.api_key_by_hash(&TokenHash::of("secret-2")).await.unwrap(), None);
    assert_eq!(s.api_key_by_hash(&TokenHash::of("secret-1")).await.unwrap(), None);

    // Usage: batched, and an older use never overwrites a newer one.
    let later = t0() + Duration::minutes(5);
    s.record_api_key_usage(&[
        KeyUsage { id: k.id.clone(), at: later, ip: "10.1.1.1".into() },
        KeyUsage { id: ApiKeyId::generate(), at: later, ip: "10.1.1.2".into() },
    ])
    .await
    .unwrap();
    s.record_api_key_usage(&[KeyUsage { id: k.id.clone(), at: t0(), ip: "10.9.9.9".into() }]).await.unwrap();
    let used = s.api_key_by_id(&k.id).await.unwrap().unwrap();
    assert_eq!((used.last_used_at, used.last_used_ip.as_deref()), (Some(later), Some("10.1.1.1")));
    s.record_api_key_usage(&[]).await.unwrap();

    let second = api_key(&w.id, "secret-4");
    s.insert_api_key(&ApiKey { created_at: later, ..second.clone() }).await.unwrap();
    let listed: Vec<ApiKeyId> = s.list_api_keys(&w.id).await.unwrap().into_iter().map(|k| k.id).collect();
    assert_eq!(listed, vec![second.id.clone(), k.id.clone()], "newest first");

    assert!(s.revoke_api_key(&k.id, later).await.unwrap());
    assert!(!s.revoke_api_key(&k.id, later).await.unwrap());
    assert_eq!(s.api_key_by_id(&k.id).await.unwrap().unwrap().revoked_at, Some(later));
    assert!(
        !s.rotate_api_key(&k.id, &TokenHash::of("secret-5"), "pcl_live_MnOp", None, later).await.unwrap(),
        "a revoked key stays revoked"
    );
}

async fn bundles<S: Store>(s: &S) {
    let w = workspace("bundles");
    let other = workspace("bundles-other");
    s.insert_workspace(&w).await.unwrap();
    s.insert_workspace(&other).await.unwrap();
    let b = ScopeBundle {
        id: BundleId::generate(),
        workspace_id: w.id.clone(),
        name: "Support Read-only".into(),
        description: None,
        scopes: ScopeSet::parse("tickets:read").unwrap(),
        created_at: t0(),
        updated_at: t0(),
    };
    s.insert_bundle(&b).await.unwrap();
    assert!(matches!(
        s.insert_bundle(&ScopeBundle { id: BundleId::generate(), ..b.clone() }).await,
        Err(StoreError::Duplicate("name"))
    ));
    // The same name in another workspace is another bundle.
    s.insert_bundle(&ScopeBundle { id: BundleId::generate(), workspace_id: other.id.clone(), ..b.clone() })
        .await
        .unwrap();
    assert_eq!(s.bundle_by_name(&w.id, "Support Read-only").await.unwrap(), Some(b.clone()));
    assert_eq!(s.bundle_by_name(&w.id, "support read-only").await.unwrap(), None);
    let wider = ScopeBundle {
        scopes: ScopeSet::parse("tickets:read tickets:write").unwrap(),
        description: Some("now writes".into()),
        updated_at: t0() + Duration::hours(1),
        ..b.clone()
    };
    assert!(s.update_bundle(&wider).await.unwrap());
    assert_eq!(s.bundle_by_name(&w.id, &b.name).await.unwrap(), Some(wider));
    assert_eq!(
        s.bundle_by_name(&other.id, &b.name).await.unwrap().unwrap().scopes,
        b.scopes,
        "the other workspace's bundle is untouched"
    );
    assert_eq!(s.list_bundles(&w.id).await.unwrap().len(), 1);
    assert!(s.delete_bundle(&w.id, &b.name).await.unwrap());
    assert!(!s.delete_bundle(&w.id, &b.name).await.unwrap());
    assert!(!s.update_bundle(&b).await.unwrap());
}

async fn trust_policies<S: Store>(s: &S) {
    let w = workspace("trust");
    s.insert_workspace(&w).await.unwrap();
    let p = TrustPolicy {
        id: TrustPolicyId::generate(),
        workspace_id: w.id.clone(),
        name: "deploys".into(),
        issuer: "https://ci.example".into(),
        audience: "portcullis".into(),
        subject: "repo:acme/app:ref:refs/heads/main".into(),
        claims: vec![("environment".into(), "prod*".into()), ("actor".into(), "*".into())],
        scopes: ScopeSet::parse("deploys:write").unwrap(),
        max_ttl: Duration::minutes(15),
        created_at: t0(),
    };
    s.insert_trust_policy(&p).await.unwrap();
    let back = s.trust_policy_by_id(&p.id).await.unwrap().unwrap();
    assert_eq!(back.claims, vec![("actor".into(), "*".into()), ("environment".into(), "prod*".into())]);
    assert_eq!(back.max_ttl, p.max_ttl);
    assert_eq!(s.trust_policies_for_issuer("https://ci.example").await.unwrap().len(), 1);
    assert!(s.trust_policies_for_issuer("https://other.example").await.unwrap().is_empty());
    assert_eq!(s.list_trust_policies(&w.id).await.unwrap().len(), 1);
    assert!(s.delete_trust_policy(&p.id).await.unwrap());
    assert!(!s.delete_trust_policy(&p.id).await.unwrap());
    assert_eq!(s.trust_policy_by_id(&p.id).await.unwrap(), None);
}

async fn audit_log<S: Store>(s: &S) {
    use portcullis_domain::audit::{Frontier, GENESIS};
    let w = workspace("audit");
    s.insert_workspace(&w).await.unwrap();
    let rec = |i: i64| {
        let mut r = AuditRecord::new("api.request", t0() + Duration::seconds(i));
        r.workspace_id = Some(w.id.clone());
        r.credential_id = Some(format!("key_{}", i % 3));
        r.credential_kind = Some(if i % 2 == 0 { "api_key" } else { "access_token" }.into());
        r.user_id = (i % 4 == 0).then(|| "usr_a".to_owned());
        r.client_id = Some("cli_x".into());
        r.ip = Some(format!("10.0.{}.1", i % 2).parse().unwrap());
        r.route = Some("/api/v1/contacts/{id}".into());
        r.path = Some(format!("/api/v1/contacts/ct_{i}"));
        r.tool = (i == 5).then(|| "list_contacts".to_owned());
        r.status = Some(if i % 5 == 4 { 403 } else { 200 });
        r.pii_access = i % 2 == 0;
        r.duration_us = Some(100 + i);
        r
    };
    let mut system = AuditRecord::new("login.failed", t0());
    system.params = r#"{"email":"h:abc"}"#.into();
    let mut batch: Vec<AuditRecord> = (0..6).map(rec).collect();
    batch.insert(2, system);
    let placed = s.append_audit(&batch, t0()).await.unwrap();
    assert_eq!(placed.len(), 7);
    assert_eq!(placed[0], (w.id.as_str().to_owned(), 0));
    assert_eq!(placed[2], (SYSTEM_LOG.to_owned(), 0));
    assert_eq!(placed[6], (w.id.as_str().to_owned(), 5));
    // Concurrent appends are serialised without gaps or forks.
    let (first, second): (Vec<_>, Vec<_>) = ((6..10).map(rec).collect(), (10..14).map(rec).collect());
    let (a, b) = tokio::join!(s.append_audit(&first, t0()), s.append_audit(&second, t0()));
    a.unwrap();
    b.unwrap();

    let head = s.audit_head(w.id.as_str()).await.unwrap().unwrap();
    assert_eq!(head.size, 14);
    let entries = s.audit_entries(w.id.as_str(), 0, 100).await.unwrap();
    assert_eq!(entries.len(), 14);
    let mut prev = GENESIS;
    let mut frontier = Frontier::default();
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.seq, i as i64);
        assert_eq!(e.prev_hash, prev, "entry {i} chained to its predecessor");
        assert_eq!(e.expected_hash(), e.hash, "entry {i} stored as hashed");
        prev = e.hash;
        frontier.push(e.hash);
    }
    assert_eq!(head.head, prev);
    assert_eq!(head.frontier, frontier);
    let mut third = rec(3);
    third.id = entries[3].record.id.clone();
    assert_eq!(entries[3].record, third, "every field round-trips");
    assert_eq!(s.audit_entries(w.id.as_str(), 12, 100).await.unwrap().len(), 2);
    let heads = s.audit_heads().await.unwrap();
    assert!(heads.iter().any(|h| h.log == SYSTEM_LOG && h.size >= 1));

    // Search: newest first, every filter, cursor.
    let q = |f: &dyn Fn(&mut AuditQuery)| {
        let mut q = AuditQuery { log: w.id.as_str().into(), limit: 100, ..Default::default() };
        f(&mut q);
        q
    };
    // Records are identified by their offset from t0 (the concurrent batches may interleave).
    let seqs =
        |v: Vec<AuditEntry>| v.into_iter().map(|e| (e.record.at - t0()).whole_seconds()).collect::<Vec<_>>();
    let all = seqs(s.search_audit(&q(&|_| {})).await.unwrap());
    assert_eq!(all, (0..14).rev().collect::<Vec<_>>());
    type Case = (Box<dyn Fn(&mut AuditQuery)>, Vec<i64>);
    let cases: Vec<Case> = vec![
        (Box::new(|q| q.credential_id = Some("key_1".into())), vec![13, 10, 7, 4, 1]),
        (Box::new(|q| q.credential_kind = Some("api_key".into())), vec![12, 10, 8, 6, 4, 2, 0]),
        (Box::new(|q| q.user_id = Some("usr_a".into())), vec![12, 8, 4, 0]),
        (Box::new(|q| q.client_id = Some("cli_y".into())), vec![]),
        (Box::new(|q| q.ip = Some("10.0.1.0/24".parse().unwrap())), vec![13, 11, 9, 7, 5, 3, 1]),
        (Box::new(|q| q.ip = Some("10.0.0.1/32".parse().unwrap())), vec![12, 10, 8, 6, 4, 2, 0]),
        (Box::new(|q| q.route = Some("/api/v1/contacts/ct_3".into())), vec![3]),
        (Box::new(|q| q.route = Some("/api/v1/contacts/{id}".into())), (0..14).rev().collect()),
        (Box::new(|q| q.tool = Some("list_contacts".into())), vec![5]),
        (Box::new(|q| q.status = Some((400, 499))), vec![9, 4]),
        (Box::new(|q| q.status = Some((200, 200))), vec![13, 12, 11, 10, 8, 7, 6, 5, 3, 2, 1, 0]),
        (Box::new(|q| q.pii = Some(true)), vec![12, 10, 8, 6, 4, 2, 0]),
        (Box::new(|q| q.event = Some("login.failed".into())), vec![]),
        (
            Box::new(|q| {
                q.from = Some(t0() + Duration::seconds(3));
                q.to = Some(t0() + Duration::seconds(5));
            }),
            vec![5, 4, 3],
        ),
    ];
    for (i, (f, want)) in cases.into_iter().enumerate() {
        assert_eq!(seqs(s.search_audit(&q(&*f)).await.unwrap()), want, "search case {i}");
    }
    let page = s
        .search_audit(&q(&|q| {
            q.pii = Some(true);
            q.limit = 3;
        }))
        .await
        .unwrap();
    let last = page.last().unwrap();
    let cursor = (last.record.at_micros(), last.seq);
    assert_eq!(seqs(page), vec![12, 10, 8]);
    let next = s
        .search_audit(&q(&|q| {
            q.pii = Some(true);
            q.limit = 2;
            q.before = Some(cursor);
        }))
        .await
        .unwrap();
    assert_eq!(seqs(next), vec![6, 4], "the cursor continues where the page ended");
    let by_value = AuditQuery {
        log: SYSTEM_LOG.into(),
        limit: 10,
        param_value: Some("h:abc".into()),
        ..Default::default()
    };
    assert_eq!(s.search_audit(&by_value).await.unwrap().len(), 1, "a parameter value is found");
    let wildcard = AuditQuery {
        log: SYSTEM_LOG.into(),
        limit: 10,
        param_value: Some("h:a_c".into()),
        ..Default::default()
    };
    assert!(s.search_audit(&wildcard).await.unwrap().is_empty(), "LIKE wildcards in the value are literal");
    let sys = s
        .search_audit(&AuditQuery { log: SYSTEM_LOG.into(), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert!(sys.iter().any(|e| e.record.params == r#"{"email":"h:abc"}"#));

    assert_eq!(s.audit_seq_at(w.id.as_str(), t0() + Duration::seconds(4)).await.unwrap(), Some(4));
    assert_eq!(s.audit_seq_at(w.id.as_str(), t0() + Duration::days(1)).await.unwrap(), None);

    // Checkpoints are unique per size; pruning keeps them.
    let mut at8 = Frontier::default();
    entries[..8].iter().for_each(|e| at8.push(e.hash));
    let cp = AuditCheckpoint {
        log: w.id.as_str().into(),
        size: 8,
        root: at8.root(),
        head: entries[7].hash,
        frontier: at8,
        note: "note".into(),
        created_at: t0(),
    };
    assert!(s.insert_audit_checkpoint(&cp).await.unwrap());
    assert!(!s.insert_audit_checkpoint(&cp).await.unwrap());
    assert_eq!(s.audit_checkpoints(w.id.as_str()).await.unwrap(), vec![cp]);
    assert_eq!(s.prune_audit(w.id.as_str(), 8).await.unwrap(), 8);
    assert_eq!(s.audit_entries(w.id.as_str(), 0, 100).await.unwrap()[0].seq, 8);
    assert_eq!(s.audit_checkpoints(w.id.as_str()).await.unwrap().len(), 1);
    assert_eq!(s.audit_head(w.id.as_str()).await.unwrap().unwrap().size, 14, "size survives pruning");
    assert_eq!(s.audit_head("ws_none").await.unwrap(), None);
}

async fn audit_sinks<S: Store>(s: &S) {
    use portcullis_domain::AuditSinkId;
    let w = workspace("sinks");
    s.insert_workspace(&w).await.unwrap();
    let sink = AuditSink {
        id: AuditSinkId::generate(),
        workspace_id: w.id.clone(),
        url: "https://siem.example/hook".into(),
        secret_sealed: vec![1, 2, 3],
        cursor: 0,
        created_at: t0(),
        disabled_at: None,
        failures: 0,
        last_error: None,
        last_delivery_at: None,
    };
    s.insert_audit_sink(&sink).await.unwrap();
    assert_eq!(s.audit_sink(&sink.id).await.unwrap(), Some(sink.clone()));
    assert_eq!(s.list_audit_sinks(Some(&w.id)).await.unwrap().len(), 1);
    assert!(s.list_audit_sinks(None).await.unwrap().iter().any(|x| x.id == sink.id));
    let until = t0() + Duration::seconds(30);
    assert_eq!(s.lease_audit_sink(&sink.id, "a", t0(), until).await.unwrap(), SinkLease::Taken);
    assert_eq!(s.lease_audit_sink(&sink.id, "b", t0(), until).await.unwrap(), SinkLease::HeldElsewhere);
    assert_eq!(s.lease_audit_sink(&sink.id, "a", t0(), until).await.unwrap(), SinkLease::Taken);
    assert_eq!(
        s.lease_audit_sink(&sink.id, "b", until, until + Duration::seconds(30)).await.unwrap(),
        SinkLease::Taken
    );
    s.record_sink_delivery(&sink.id, None, Some("HTTP 500"), t0()).await.unwrap();
    s.record_sink_delivery(&sink.id, None, Some("HTTP 502"), t0()).await.unwrap();
    let got = s.audit_sink(&sink.id).await.unwrap().unwrap();
    assert_eq!((got.failures, got.last_error.as_deref(), got.cursor), (2, Some("HTTP 502"), 0));
    s.record_sink_delivery(&sink.id, Some(10), None, t0()).await.unwrap();
    s.record_sink_delivery(&sink.id, Some(4), None, t0()).await.unwrap();
    let got = s.audit_sink(&sink.id).await.unwrap().unwrap();
    assert_eq!((got.failures, got.last_error, got.cursor), (0, None, 10), "cursor never moves back");
    assert_eq!(got.last_delivery_at, Some(t0()));
    assert!(s.disable_audit_sink(&sink.id, t0()).await.unwrap());
    assert!(!s.disable_audit_sink(&sink.id, t0()).await.unwrap());
}

async fn documents<S: Store>(s: &S) {
    let w = workspace("documents");
    let other = workspace("documents-other");
    s.insert_workspace(&w).await.unwrap();
    s.insert_workspace(&other).await.unwrap();
    let doc = |ws: &Workspace, id: &str| Document {
        workspace_id: ws.id.clone(),
        kind: "contact".into(),
        id: id.into(),
        body: serde_json::json!({"id": id, "name": "Ann", "tags": ["a"]}),
        created_at: t0(),
        updated_at: t0(),
    };
    for id in ["ctc_1", "ctc_2", "ctc_3"] {
        s.insert_document(&doc(&w, id)).await.unwrap();
    }
    s.insert_document(&doc(&other, "ctc_1")).await.unwrap();
    assert!(matches!(s.insert_document(&doc(&w, "ctc_1")).await, Err(StoreError::Duplicate(_))));
    assert_eq!(s.document(&w.id, "contact", "ctc_2").await.unwrap().unwrap(), doc(&w, "ctc_2"));
    assert!(s.document(&w.id, "message", "ctc_2").await.unwrap().is_none(), "kinds are apart");
    let page = s.list_documents(&w.id, "contact", Some("ctc_1"), 1).await.unwrap();
    assert_eq!(page.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["ctc_2"]);
    assert_eq!(s.count_documents(&w.id, "contact").await.unwrap(), 3);
    let mut changed = doc(&w, "ctc_3");
    changed.body = serde_json::json!({"id": "ctc_3", "name": "Bo"});
    changed.updated_at = t0() + Duration::seconds(5);
    assert!(s.update_document(&changed).await.unwrap());
    assert_eq!(s.document(&w.id, "contact", "ctc_3").await.unwrap().unwrap(), changed);
    assert!(s.delete_document(&w.id, "contact", "ctc_1").await.unwrap());
    assert!(!s.delete_document(&w.id, "contact", "ctc_1").await.unwrap());
    assert!(s.document(&other.id, "contact", "ctc_1").await.unwrap().is_some(), "other workspace untouched");
    let mut foreign = doc(&other, "ctc_2");
    foreign.body = serde_json::json!({});
    assert!(!s.update_document(&foreign).await.unwrap(), "ids are per workspace");
}

async fn leases<S: Store>(s: &S) {
    let (now, ttl) = (t0(), Duration::seconds(90));
    assert!(s.acquire_lease("work", "a", now, now + ttl).await.unwrap(), "a free lease is taken");
    assert!(!s.acquire_lease("work", "b", now, now + ttl).await.unwrap(), "a held lease is not");
    assert!(
        s.acquire_lease("work", "a", now + Duration::seconds(30), now + ttl * 2).await.unwrap(),
        "renewed"
    );
    let later = now + ttl * 2;
    assert!(
        !s.acquire_lease("work", "b", later - Duration::seconds(1), later).await.unwrap(),
        "renewal counted"
    );
    assert!(s.acquire_lease("work", "b", later, later + ttl).await.unwrap(), "a lapsed lease is taken over");
    assert!(!s.acquire_lease("work", "a", later, later + ttl).await.unwrap(), "the old holder lost it");
    s.release_lease("work", "a").await.unwrap();
    assert!(!s.acquire_lease("work", "a", later, later + ttl).await.unwrap(), "only the holder releases");
    s.release_lease("work", "b").await.unwrap();
    assert!(s.acquire_lease("work", "a", later, later + ttl).await.unwrap(), "a released lease is free");
    assert!(s.acquire_lease("other", "b", later, later + ttl).await.unwrap(), "leases are independent");
}

async fn sweeps<S: Store>(s: &S) {
    let (w, u, c) = fixture(s, "sweeps").await;
    let (_, dead) = grant_and_family(s, &w, &u, &c).await;
    let (_, live) = grant_and_family(s, &w, &u, &c).await;
    let live = TokenFamily { expires_at: t0() + Duration::days(1000), ..live };
    let code = |family: &TokenFamily, tag: &str, expires_at| AuthCode {
        hash: TokenHash::of(tag),
        client_id: c.id.clone(),
        user_id: u.id.clone(),
        workspace_id: w.id.clone(),
        grant_id: family.grant_id.clone().unwrap(),
        family_id: family.id.clone(),
        redirect_uri: "https://app.example/cb".into(),
        redirect_uri_explicit: false,
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        scopes: ScopeSet::parse("contacts:read").unwrap(),
        nonce: None,
        auth_time: t0(),
        created_at: t0(),
        expires_at,
        redeemed_at: None,
        dpop_jkt: None,
    };
    let now = t0() + Duration::days(200);
    s.insert_code(&code(&dead, "pcl_ac_sweep_dead", t0() + Duration::seconds(60)), &dead).await.unwrap();
    s.insert_code(&code(&live, "pcl_ac_sweep_live", now + Duration::seconds(60)), &live).await.unwrap();
    s.insert_refresh_token(&refresh_row(&dead, "pcl_rt_sweep_dead")).await.unwrap();
    s.insert_refresh_token(&refresh_row(&live, "pcl_rt_sweep_live")).await.unwrap();
    let session = |tag: &str, expires_at| Session {
        hash: TokenHash::of(tag),
        user_id: u.id.clone(),
        auth_time: t0(),
        created_at: t0(),
        expires_at,
    };
    s.insert_session(&session("pcl_ss_sweep_dead", t0() + Duration::hours(8))).await.unwrap();
    s.insert_session(&session("pcl_ss_sweep_live", now + Duration::hours(8))).await.unwrap();

    let r = s.sweep_expired(now, now - Duration::days(1)).await.unwrap();
    assert!(
        r.token_families >= 1 && r.refresh_tokens >= 1 && r.authorization_codes >= 1 && r.sessions >= 1,
        "{r:?}"
    );
    assert_eq!(s.family(&dead.id).await.unwrap(), None, "a family past its life is gone");
    assert_eq!(s.refresh_token(&TokenHash::of("pcl_rt_sweep_dead")).await.unwrap(), None);
    assert_eq!(s.code_by_hash(&TokenHash::of("pcl_ac_sweep_dead")).await.unwrap(), None);
    assert!(s.family(&live.id).await.unwrap().is_some(), "a living family stays");
    assert!(s.refresh_token(&TokenHash::of("pcl_rt_sweep_live")).await.unwrap().is_some());
    assert!(s.code_by_hash(&TokenHash::of("pcl_ac_sweep_live")).await.unwrap().is_some());
    assert!(s.session(&TokenHash::of("pcl_ss_sweep_live"), now).await.unwrap().is_some());
    assert_eq!(s.session(&TokenHash::of("pcl_ss_sweep_dead"), t0()).await.unwrap(), None);
    let again = s.sweep_expired(now, now - Duration::days(1)).await.unwrap();
    assert_eq!(again.total(), 0, "nothing left to sweep: {again:?}");
}
