//! The store suite: the same checks against SQLite and PostgreSQL.

use std::sync::Arc;

use sesame::store::{
    Bootstrap, DekRecord, DekState, DekWithWraps, Inserted, KekRecord, KekState, OrgRecord, Store, TokenKind,
    TokenRecord, UserRecord, WrapRecord,
};

use crate::support::{PgDb, temp_dir};

fn id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn dek(scope: &str, generation: i64, kek_id: &str, wrapped: Vec<u8>) -> DekWithWraps {
    let dek_id = id();
    DekWithWraps {
        dek: DekRecord {
            id: dek_id.clone(),
            scope: scope.into(),
            org_id: scope
                .strip_prefix("stack:")
                .and_then(|r| r.split(':').next())
                .map(str::to_owned),
            generation,
            state: DekState::Active,
            created_ms: 1_000 + generation,
        },
        wraps: vec![WrapRecord {
            dek_id,
            kek_id: kek_id.into(),
            kek_version: "v1".into(),
            wrapped,
            wrap_alg: "A256GCM".into(),
            binding: None,
            primary: true,
            created_ms: 1_000,
        }],
    }
}

fn bootstrap_rows(org: &str, token_hash: [u8; 32]) -> Bootstrap {
    let kek_id = id();
    let user_id = id();
    Bootstrap {
        system_kek: KekRecord {
            id: kek_id.clone(),
            org_id: None,
            uri: "local://default".into(),
            state: KekState::Active,
            is_default: true,
            created_ms: 1,
        },
        canary: dek("system", 1, &kek_id, vec![1, 2, 3]),
        org: OrgRecord {
            id: id(),
            name: org.into(),
            created_ms: 1,
        },
        admin: UserRecord {
            id: user_id.clone(),
            login: "admin".into(),
            display_name: "Admin".into(),
            instance_admin: true,
            created_ms: 1,
        },
        admin_token: TokenRecord {
            id: id(),
            token_hash,
            kind: TokenKind::Personal,
            user_id: Some(user_id),
            org_id: None,
            team_id: None,
            description: "first".into(),
            created_ms: 1,
            expires_ms: Some(9_999),
            revoked_ms: None,
            parent_id: None,
            confined_org_id: None,
            role_cap: None,
        },
    }
}

async fn suite(store: Arc<dyn Store>) {
    // Bootstrap: once, and concurrent attempts agree on one winner.
    assert!(!store.is_bootstrapped().await.unwrap());
    let boot = bootstrap_rows("acme", [7; 32]);
    let rivals = (0..4).map(|i| {
        let store = store.clone();
        let rows = if i == 0 {
            boot.clone()
        } else {
            bootstrap_rows(&format!("rival{i}"), [i; 32])
        };
        tokio::spawn(async move { store.bootstrap(&rows).await.unwrap() })
    });
    let mut outcomes = Vec::new();
    for r in rivals {
        outcomes.push(r.await.unwrap());
    }
    assert_eq!(
        outcomes.iter().filter(|o| **o == Inserted::New).count(),
        1,
        "{outcomes:?}"
    );
    assert!(store.is_bootstrapped().await.unwrap());
    let orgs = store.orgs().await.unwrap();
    assert_eq!(orgs.len(), 1, "losers must write nothing: {orgs:?}");
    let winner_org = orgs[0].clone();

    // Lookups of what the winner wrote.
    let keks = store.keks().await.unwrap();
    assert_eq!(keks.len(), 1);
    let system = keks[0].clone();
    assert_eq!(system.org_id, None);
    assert_eq!(store.default_kek(None).await.unwrap(), Some(system.clone()));
    assert_eq!(
        store.default_kek(Some(&winner_org.id)).await.unwrap(),
        Some(system.clone())
    );
    assert_eq!(
        store.org_by_name(&winner_org.name).await.unwrap(),
        Some(winner_org.clone())
    );
    assert_eq!(store.org_by_name("nobody").await.unwrap(), None);

    // Whichever attempt won, its token (and only its token) is there, with its user.
    let winner_hash: u8 = match winner_org.name.strip_prefix("rival") {
        Some(n) => n.parse().unwrap(),
        None => 7,
    };
    let found = store.token_by_hash(&[winner_hash; 32]).await.unwrap().expect("token");
    assert_eq!(found.token.kind, TokenKind::Personal);
    assert_eq!(found.token.expires_ms, Some(9_999));
    assert!(
        found
            .user
            .as_ref()
            .is_some_and(|u| u.instance_admin && u.login == "admin")
    );
    if winner_hash == 7 {
        assert_eq!(found.token, boot.admin_token);
        assert_eq!(found.user, Some(boot.admin.clone()));
    }
    for loser in (1..4u8).chain([7]).filter(|h| *h != winner_hash) {
        assert_eq!(store.token_by_hash(&[loser; 32]).await.unwrap(), None);
    }
    assert_eq!(store.token_by_hash(&[0xEE; 32]).await.unwrap(), None);

    // DEKs: bytes survive exactly, generations are unique per scope, the newest active one is current.
    let blob: Vec<u8> = (0..=255).collect();
    let g1 = dek("stack:o:p/s", 1, &system.id, blob.clone());
    assert_eq!(store.insert_dek(&g1).await.unwrap(), Inserted::New);
    let again = dek("stack:o:p/s", 1, &system.id, vec![9]);
    assert_eq!(store.insert_dek(&again).await.unwrap(), Inserted::AlreadyExists);
    assert_eq!(
        store.dek(&again.dek.id).await.unwrap(),
        None,
        "a conflicting insert leaves nothing"
    );
    assert_eq!(store.dek(&g1.dek.id).await.unwrap(), Some(g1.clone()));
    assert_eq!(store.current_dek("stack:o:p/s").await.unwrap(), Some(g1.clone()));
    let mut g2 = dek("stack:o:p/s", 2, &system.id, vec![2]);
    g2.wraps[0].binding = Some(vec![0xB1, 0x7D]);
    store.insert_dek(&g2).await.unwrap();
    assert_eq!(store.current_dek("stack:o:p/s").await.unwrap(), Some(g2.clone()));
    assert_eq!(store.current_dek("stack:o:p/other").await.unwrap(), None);

    // A wrap naming an unknown KEK violates a foreign key: the whole insert rolls back.
    let orphan = dek("stack:o:p/orphan", 1, "no-such-kek", vec![1]);
    assert!(store.insert_dek(&orphan).await.is_err());
    assert_eq!(store.dek(&orphan.dek.id).await.unwrap(), None);
    assert_eq!(store.current_dek("stack:o:p/orphan").await.unwrap(), None);

    // The start-up sample is the oldest DEK under the KEK: the canary.
    let sample = store.sample_wrap(&system.id).await.unwrap().expect("sample");
    assert_eq!(sample.dek.scope, "system");
    assert_eq!(store.sample_wrap("no-such-kek").await.unwrap(), None);

    // Concurrent first DEKs of one scope: exactly one lands.
    let racers = (0..8).map(|i| {
        let store = store.clone();
        let row = dek("stack:o:p/race", 1, &system.id, vec![i]);
        tokio::spawn(async move { store.insert_dek(&row).await.unwrap() })
    });
    let mut new = 0;
    for r in racers {
        if r.await.unwrap() == Inserted::New {
            new += 1;
        }
    }
    assert_eq!(new, 1);

    audit_chains(store.clone()).await;
    writes_carry_their_audit_record(store.clone()).await;
}

/// A write appends its audit event in its own transaction when it takes effect, and nothing when it does not.
async fn writes_carry_their_audit_record(store: Arc<dyn Store>) {
    use sesame::core::audit::{AuditAction, AuditEvent, verify};
    let org = OrgRecord {
        id: id(),
        name: "audited".into(),
        created_ms: 1,
    };
    let event = AuditEvent::new(
        org.id.clone(),
        5,
        "user:admin",
        "127.0.0.1",
        AuditAction::OrgCreate,
        "audited",
    );
    assert_eq!(store.insert_org(&org, &event).await.unwrap(), Inserted::New);
    let twin = OrgRecord {
        id: id(),
        ..org.clone()
    };
    let twin_event = AuditEvent::new(
        twin.id.clone(),
        6,
        "user:admin",
        "127.0.0.1",
        AuditAction::OrgCreate,
        "audited",
    );
    assert_eq!(
        store.insert_org(&twin, &twin_event).await.unwrap(),
        Inserted::AlreadyExists
    );
    let records = store.audit_records(&org.id, 0, 10).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].event, event);
    assert_eq!(records[0].event.action, "org.create");
    assert!(verify(&records, None).is_ok());
    assert!(
        store.audit_records(&twin.id, 0, 10).await.unwrap().is_empty(),
        "a refused write appends nothing"
    );

    // The record can depend on what the write did: a revision's number.
    let env = sesame::store::envs::EnvRecord {
        id: id(),
        org_id: org.id.clone(),
        project: "p".into(),
        name: "e".into(),
        head: 1,
        created_ms: 1,
        modified_ms: 1,
    };
    let create = AuditEvent::new(
        org.id.clone(),
        7,
        "user:admin",
        "127.0.0.1",
        AuditAction::EnvCreate,
        "audited/p/e",
    );
    assert_eq!(
        store.create_env(&env, "", "admin", &create).await.unwrap(),
        Inserted::New
    );
    let update = AuditEvent::new(
        org.id.clone(),
        8,
        "user:admin",
        "127.0.0.1",
        AuditAction::EnvUpdate,
        "audited/p/e",
    );
    let audit = |rev: &i64| update.clone().detail(format!("revision {rev}"));
    let written = store
        .write_revision(&env.id, Some(1), "values: {}\n", "admin", 8, Some(&audit))
        .await
        .unwrap();
    assert_eq!(written, sesame::store::envs::Written::Revision(2));
    let stale = store
        .write_revision(&env.id, Some(1), "values: {}\n", "admin", 9, Some(&audit))
        .await
        .unwrap();
    assert_eq!(stale, sesame::store::envs::Written::Stale);
    let records = store.audit_records(&org.id, 0, 10).await.unwrap();
    let actions: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r.event.action.as_str(), r.event.detail.as_str()))
        .collect();
    assert_eq!(
        actions,
        [("org.create", ""), ("env.create", ""), ("env.update", "revision 2")]
    );
}

/// Concurrent appends to two chains (one writer per replica would do this) keep each chain gap-free and linked.
async fn audit_chains(store: Arc<dyn Store>) {
    use sesame::core::audit::{AuditEvent, verify};
    let event = |chain: &str, i: usize| AuditEvent {
        chain: chain.into(),
        time_ms: i as i64,
        actor: "user:admin".into(),
        source: "127.0.0.1".into(),
        action: format!("test.{i}"),
        target: "t".into(),
        outcome: "ok".into(),
        detail: "d".into(),
    };
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..10 {
                    let batch = vec![
                        event("org-a", w * 100 + i),
                        event("org-b", w * 100 + i),
                        event("org-a", i),
                    ];
                    store.append_audit(&batch).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let a = store.audit_records("org-a", 0, 1000).await.unwrap();
    let b = store.audit_records("org-b", 0, 1000).await.unwrap();
    assert_eq!((a.len(), b.len()), (160, 80));
    assert_eq!(verify(&a, Some(&a[159].hash)), Ok(160));
    assert_eq!(verify(&b, None), Ok(80));
    // Paging continues where it left off.
    assert_eq!(store.audit_records("org-a", 150, 1000).await.unwrap()[0].seq, 151);
}

#[tokio::test]
async fn store_suite_on_sqlite() {
    let dir = temp_dir();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = sesame::store::connect(&url).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    suite(store).await;
    // Reopening runs the migrations again harmlessly and sees the same data.
    let reopened = sesame::store::connect(&url).await.unwrap();
    assert!(reopened.is_bootstrapped().await.unwrap());
}

#[tokio::test]
async fn store_suite_on_postgres() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let store = sesame::store::connect(&db.url).await.unwrap();
    assert_eq!(store.backend(), "postgres");
    suite(store.clone()).await;
    drop(store);
    db.drop_db().await;
}

#[tokio::test]
async fn unsupported_store_urls_are_named() {
    let err = sesame::store::connect("mysql://x").await.err().unwrap();
    assert!(err.to_string().contains("mysql"), "{err}");
}
