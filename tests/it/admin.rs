//! The access-administration API end to end on SQLite: orgs, members, teams, role grants and tokens; that roles
//! take effect at once on this replica; that orgs a caller has no role in look exactly like missing ones; that
//! every write is audited and no token's text reaches the audit log; and `sesame member|token` from the command
//! line.

use reqwest::Method;
use serde_json::{Value, json};
use sesame::core::tokens::AccessToken;
use sesame::store::{TokenKind, TokenRecord};

use crate::support::{TestServer, config, temp_dir};

const V1: &str = "/api/sesame/v1";

/// Sends a request with `token`; returns status and JSON body (`null` when empty).
async fn call(srv: &TestServer, method: Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = srv
        .http
        .request(method, format!("{}{path}", srv.base))
        .header("Authorization", format!("token {token}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    };
    (status, body)
}

async fn get(srv: &TestServer, path: &str, token: &str) -> (u16, Value) {
    call(srv, Method::GET, path, token, None).await
}

/// Adds `login` to `org` with `role` as the instance administrator; returns the new user's token if one was made.
async fn add_member(srv: &TestServer, org: &str, login: &str, role: &str) -> Option<String> {
    let (status, body) = call(
        srv,
        Method::POST,
        &format!("{V1}/orgs/{org}/members"),
        &srv.token,
        Some(json!({ "login": login, "role": role })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["member"]["login"], json!(login));
    assert_eq!(body["member"]["role"], json!(role));
    body["token"].as_str().map(str::to_owned)
}

async fn new_user(srv: &TestServer, org: &str, login: &str, role: &str) -> String {
    add_member(srv, org, login, role)
        .await
        .expect("a new user gets a token")
}

async fn grant(srv: &TestServer, org: &str, subject: &str, role: &str) -> (u16, Value) {
    call(
        srv,
        Method::PUT,
        &format!("{V1}/orgs/{org}/roles"),
        &srv.token,
        Some(json!({ "subject": subject, "role": role })),
    )
    .await
}

fn logins(members: &Value) -> Vec<String> {
    members["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["login"].as_str().unwrap().to_owned())
        .collect()
}

fn assert_error(status: u16, body: &Value, want: u16) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["code"], json!(want), "{body}");
}

use crate::support::on_both;

on_both!(
    orgs,
    orgs_are_made_by_the_instance_administrator_only,
    orgs_are_made_by_the_instance_administrator_only_on_postgres
);

async fn orgs(srv: &TestServer) {
    let alice = new_user(srv, "acme", "alice", "admin").await;

    let (status, body) = call(
        srv,
        Method::POST,
        &format!("{V1}/orgs"),
        &alice,
        Some(json!({"name": "beta"})),
    )
    .await;
    assert_error(status, &body, 403);
    let (status, body) = call(
        srv,
        Method::POST,
        &format!("{V1}/orgs"),
        &srv.token,
        Some(json!({"name": "beta"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], json!("beta"));
    let (status, body) = call(
        srv,
        Method::POST,
        &format!("{V1}/orgs"),
        &srv.token,
        Some(json!({"name": "beta"})),
    )
    .await;
    assert_error(status, &body, 409);
    let (status, body) = call(
        srv,
        Method::POST,
        &format!("{V1}/orgs"),
        &srv.token,
        Some(json!({"name": "a/b"})),
    )
    .await;
    assert_error(status, &body, 400);

    let names = |v: &Value| -> Vec<String> {
        v["orgs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, all) = get(srv, &format!("{V1}/orgs"), &srv.token).await;
    assert_eq!(names(&all), ["acme", "beta"]);
    let (_, mine) = get(srv, &format!("{V1}/orgs"), &alice).await;
    assert_eq!(names(&mine), ["acme"]);

    // What the Pulumi/ESC CLI asks at login.
    let (status, user) = get(srv, "/api/user", &alice).await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["githubLogin"], json!("alice"));
    assert_eq!(user["organizations"], json!([{"githubLogin": "acme", "name": "acme"}]));
    let (_, admin) = get(srv, "/api/user", &srv.token).await;
    assert_eq!(admin["githubLogin"], json!("admin"));
    assert_eq!(admin["organizations"].as_array().unwrap().len(), 2, "{admin}");
}

on_both!(
    members,
    members_get_a_working_token_and_their_roles_take_effect,
    members_get_a_working_token_and_their_roles_take_effect_on_postgres
);

async fn members(srv: &TestServer) {
    let members = format!("{V1}/orgs/acme/members");
    let alice = new_user(srv, "acme", "alice", "admin").await;
    let bob = new_user(srv, "acme", "bob", "reader").await;

    // The token alice got works, and her admin role lets her invite members (never create users).
    let (status, list) = get(srv, &members, &alice).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(logins(&list), ["alice", "bob"]);
    let (status, body) = call(
        srv,
        Method::POST,
        &members,
        &alice,
        Some(json!({"login": "carol", "role": "opener"})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["invitation"]["login"], json!("carol"), "{body}");
    assert!(body.get("token").is_none(), "{body}");

    // A reader reads but may not manage.
    let (status, _) = get(srv, &members, &bob).await;
    assert_eq!(status, 200);
    let (status, body) = call(
        srv,
        Method::POST,
        &members,
        &bob,
        Some(json!({"login": "mallory", "role": "admin"})),
    )
    .await;
    assert_error(status, &body, 403);
    let (status, body) = call(
        srv,
        Method::PATCH,
        &format!("{members}/bob"),
        &bob,
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_error(status, &body, 403);

    // Adding a member twice conflicts; an existing user joins another org without a new token.
    let (status, body) = call(
        srv,
        Method::POST,
        &members,
        &srv.token,
        Some(json!({"login": "bob", "role": "admin"})),
    )
    .await;
    assert_error(status, &body, 409);

    // An org bob has no role in answers exactly like one that does not exist.
    let (missing_status, missing) = get(srv, &format!("{V1}/orgs/beta/members"), &bob).await;
    assert_error(missing_status, &missing, 404);
    let (status, _) = call(
        srv,
        Method::POST,
        &format!("{V1}/orgs"),
        &srv.token,
        Some(json!({"name": "beta"})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = get(srv, &format!("{V1}/orgs/beta/members"), &alice).await;
    assert_eq!(status, 404);
    assert_eq!(
        add_member(srv, "beta", "alice", "reader").await,
        None,
        "alice exists: no new token"
    );
    let (status, _) = get(srv, &format!("{V1}/orgs/beta/members"), &alice).await;
    assert_eq!(status, 200, "alice's new membership counts at once");
    let (status, hidden) = get(srv, &format!("{V1}/orgs/beta/members"), &bob).await;
    assert_eq!((status, &hidden), (missing_status, &missing));
    let (status, hidden) = call(
        srv,
        Method::POST,
        &format!("{V1}/orgs/beta/members"),
        &bob,
        Some(json!({"login": "x", "role": "admin"})),
    )
    .await;
    assert_eq!(status, 404, "{hidden}");

    // Promoted, bob manages at once (though his reader role was just used, and so cached); set to none, acme
    // disappears for him.
    let (status, _) = get(srv, &members, &bob).await;
    assert_eq!(status, 200);
    let (status, body) = call(
        srv,
        Method::PATCH,
        &format!("{members}/bob"),
        &alice,
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["role"], json!("admin"));
    let (status, body) = call(
        srv,
        Method::POST,
        &members,
        &bob,
        Some(json!({"login": "dave", "role": "reader"})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let (status, _) = call(
        srv,
        Method::PATCH,
        &format!("{members}/bob"),
        &alice,
        Some(json!({"role": "none"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = get(srv, &members, &bob).await;
    assert_error(status, &body, 404);
    let (status, body) = call(
        srv,
        Method::PATCH,
        &format!("{members}/bob"),
        &alice,
        Some(json!({"role": "owner"})),
    )
    .await;
    assert_error(status, &body, 400);

    // Removed, erin loses access at once and leaves the member list.
    let erin = new_user(srv, "acme", "erin", "reader").await;
    let (status, _) = get(srv, &members, &erin).await;
    assert_eq!(status, 200);
    let (status, _) = call(srv, Method::DELETE, &format!("{members}/erin"), &alice, None).await;
    assert_eq!(status, 204);
    let (status, _) = get(srv, &members, &erin).await;
    assert_eq!(status, 404);
    let (status, _) = call(srv, Method::DELETE, &format!("{members}/erin"), &alice, None).await;
    assert_eq!(status, 404);
    let (_, list) = get(srv, &members, &alice).await;
    assert_eq!(
        logins(&list),
        ["alice", "bob"],
        "invited, carol and dave are not members"
    );
}

on_both!(
    teams,
    team_grants_apply_to_the_team_members_and_team_tokens,
    team_grants_apply_to_the_team_members_and_team_tokens_on_postgres
);

async fn teams(srv: &TestServer) {
    let members = format!("{V1}/orgs/acme/members");
    let teams = format!("{V1}/orgs/acme/teams");
    let roles = format!("{V1}/orgs/acme/roles");
    let dave = new_user(srv, "acme", "dave", "none").await;
    let (status, _) = get(srv, &members, &dave).await;
    assert_eq!(status, 404, "a member with no role sees nothing");

    let (status, body) = call(
        srv,
        Method::POST,
        &teams,
        &srv.token,
        Some(json!({"name": "ops", "description": "on call"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(srv, Method::POST, &teams, &srv.token, Some(json!({"name": "ops"}))).await;
    assert_error(status, &body, 409);
    let (status, body) = grant(srv, "acme", "team:ops", "reader").await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = get(srv, &members, &dave).await;
    assert_eq!(status, 404, "dave is not in the team yet");

    // Only members of the org join its teams.
    let (status, _) = call(
        srv,
        Method::PUT,
        &format!("{teams}/ops/members/nobody"),
        &srv.token,
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(srv, Method::PUT, &format!("{teams}/ops/members/dave"), &srv.token, None).await;
    assert_eq!(status, 204);
    let (_, list) = get(srv, &teams, &srv.token).await;
    assert_eq!(list["teams"][0]["members"], json!(["dave"]), "{list}");

    // The team's role is dave's, at once.
    let (status, _) = get(srv, &members, &dave).await;
    assert_eq!(status, 200);
    let (status, body) = call(
        srv,
        Method::POST,
        &members,
        &dave,
        Some(json!({"login": "eve", "role": "reader"})),
    )
    .await;
    assert_error(status, &body, 403);
    let (status, _) = grant(srv, "acme", "team:ops", "admin").await;
    assert_eq!(status, 200);
    let (status, body) = call(
        srv,
        Method::POST,
        &members,
        &dave,
        Some(json!({"login": "eve", "role": "reader"})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    add_member(srv, "acme", "eve", "reader").await;

    // Grants are listed by login and team name, never by id.
    let (status, body) = grant(srv, "acme", "user:eve", "none").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        srv,
        Method::PUT,
        &roles,
        &srv.token,
        Some(json!({"subject": "user:eve", "project": "app", "environment": "prod", "role": "opener"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, list) = get(srv, &roles, &dave).await;
    assert_eq!(status, 200, "{list}");
    let mut rows: Vec<String> = list["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            format!(
                "{} {} {} {}",
                g["subject"].as_str().unwrap(),
                g["project"].as_str().unwrap(),
                g["environment"].as_str().unwrap(),
                g["role"].as_str().unwrap()
            )
        })
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            "team:ops   admin",
            "user:dave   none",
            "user:eve   none",
            "user:eve app prod opener"
        ]
    );

    // Bad grants are refused.
    for (body, want) in [
        (json!({"subject": "user:nobody", "role": "reader"}), 404),
        (json!({"subject": "team:nope", "role": "reader"}), 404),
        (json!({"subject": "ops", "role": "reader"}), 400),
        (json!({"subject": "team:ops", "role": "owner"}), 400),
        (
            json!({"subject": "team:ops", "environment": "prod", "role": "reader"}),
            400,
        ),
    ] {
        let (status, answer) = call(srv, Method::PUT, &roles, &srv.token, Some(body.clone())).await;
        assert_error(status, &answer, want);
    }

    // A team token acts with the team's grants and names itself after the team.
    let (status, created) = call(
        srv,
        Method::POST,
        &format!("{V1}/tokens"),
        &srv.token,
        Some(json!({"kind": "team", "org": "acme", "team": "ops", "description": "ci"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let team_token = created["token"].as_str().unwrap().to_owned();
    let (_, who) = get(srv, "/api/user", &team_token).await;
    assert_eq!(who["githubLogin"], json!("team:acme/ops"), "{who}");
    assert_eq!(who["organizations"], json!([{"githubLogin": "acme", "name": "acme"}]));
    let (status, _) = get(srv, &members, &team_token).await;
    assert_eq!(status, 200);

    // The team's grant revoked: dave and the team token see nothing again.
    let (status, _) = call(
        srv,
        Method::DELETE,
        &format!("{roles}?subject=team:ops"),
        &srv.token,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(
        srv,
        Method::DELETE,
        &format!("{roles}?subject=team:ops"),
        &srv.token,
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = get(srv, &members, &dave).await;
    assert_eq!(status, 404);
    let (status, _) = get(srv, &members, &team_token).await;
    assert_eq!(status, 404);

    // Out of the team, dave no longer gets its grant back.
    let (status, _) = grant(srv, "acme", "team:ops", "reader").await;
    assert_eq!(status, 200);
    let (status, _) = get(srv, &members, &dave).await;
    assert_eq!(status, 200);
    let (status, _) = call(
        srv,
        Method::DELETE,
        &format!("{teams}/ops/members/dave"),
        &srv.token,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = get(srv, &members, &dave).await;
    assert_eq!(status, 404);

    // A deleted team takes its grants and its tokens with it.
    let (status, _) = call(srv, Method::PUT, &format!("{teams}/ops/members/dave"), &srv.token, None).await;
    assert_eq!(status, 204);
    let (status, _) = get(srv, &members, &dave).await;
    assert_eq!(status, 200);
    let (status, _) = call(srv, Method::DELETE, &format!("{teams}/ops"), &srv.token, None).await;
    assert_eq!(status, 204);
    let (status, _) = get(srv, &members, &dave).await;
    assert_eq!(status, 404);
    let (status, _) = get(srv, "/api/user", &team_token).await;
    assert_eq!(status, 401);
    let (_, list) = get(srv, &roles, &srv.token).await;
    assert!(!list.to_string().contains("team:"), "{list}");
    let (status, _) = call(srv, Method::DELETE, &format!("{teams}/ops"), &srv.token, None).await;
    assert_eq!(status, 404);
}

on_both!(
    tokens,
    tokens_are_made_listed_and_revoked_at_once,
    tokens_are_made_listed_and_revoked_at_once_on_postgres
);

async fn tokens(srv: &TestServer) {
    let tokens = format!("{V1}/tokens");
    let alice = new_user(srv, "acme", "alice", "reader").await;
    let bob = new_user(srv, "acme", "bob", "reader").await;

    // A personal token for oneself, shown once.
    let (status, created) = call(
        srv,
        Method::POST,
        &tokens,
        &alice,
        Some(json!({"kind": "personal", "description": "laptop", "expiresInDays": 30})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let laptop = created["token"].as_str().unwrap().to_owned();
    let laptop_id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["kind"], json!("personal"));
    let days = (created["expiresMs"].as_i64().unwrap() - created["createdMs"].as_i64().unwrap()) / 86_400_000;
    assert_eq!(days, 30);
    let (status, who) = get(srv, "/api/user", &laptop).await;
    assert_eq!((status, &who["githubLogin"]), (200, &json!("alice")));

    // Listing shows facts, never text or hash.
    let (status, list) = get(srv, &tokens, &alice).await;
    assert_eq!(status, 200, "{list}");
    let listed = list["tokens"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "alice's first token and the laptop one: {list}");
    assert!(
        listed
            .iter()
            .any(|t| t["id"] == json!(laptop_id) && t["description"] == json!("laptop"))
    );
    for t in listed {
        assert!(
            t.get("token").is_none() && t.get("hash").is_none() && t.get("tokenHash").is_none(),
            "{t}"
        );
    }
    assert!(!list.to_string().contains(&laptop) && !list.to_string().contains(&alice));

    // Bounds on lifetime and kinds.
    for body in [
        json!({"kind": "personal", "expiresInDays": 0}),
        json!({"kind": "personal", "expiresInDays": 366}),
        json!({"kind": "robot"}),
        json!({"kind": "organization"}),
        json!({"kind": "team", "org": "acme"}),
    ] {
        let (status, answer) = call(srv, Method::POST, &tokens, &alice, Some(body.clone())).await;
        assert_error(status, &answer, 400);
    }

    // Org tokens need org admins; they act as admins of their org.
    let (status, body) = call(
        srv,
        Method::POST,
        &tokens,
        &alice,
        Some(json!({"kind": "organization", "org": "acme"})),
    )
    .await;
    assert_error(status, &body, 403);
    let (status, body) = call(
        srv,
        Method::POST,
        &tokens,
        &alice,
        Some(json!({"kind": "organization", "org": "nope"})),
    )
    .await;
    assert_error(status, &body, 404);
    let (status, created) = call(
        srv,
        Method::POST,
        &tokens,
        &srv.token,
        Some(json!({"kind": "organization", "org": "acme", "description": "deploy"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let org_token = created["token"].as_str().unwrap().to_owned();
    let org_token_id = created["id"].as_str().unwrap().to_owned();
    let (_, who) = get(srv, "/api/user", &org_token).await;
    assert_eq!(who["githubLogin"], json!("org:acme"), "{who}");
    let (status, _) = call(
        srv,
        Method::POST,
        &format!("{V1}/orgs/acme/members"),
        &org_token,
        Some(json!({"login": "carol", "role": "reader"})),
    )
    .await;
    assert_eq!(status, 202);
    let (status, body) = call(
        srv,
        Method::POST,
        &tokens,
        &org_token,
        Some(json!({"kind": "personal"})),
    )
    .await;
    assert_error(status, &body, 400);

    let (status, list) = get(srv, &format!("{tokens}?org=acme"), &srv.token).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["tokens"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["tokens"][0]["id"], json!(org_token_id));
    assert_eq!(list["tokens"][0]["org"], json!("acme"));
    let (status, body) = get(srv, &format!("{tokens}?org=acme"), &alice).await;
    assert_error(status, &body, 403);

    // Revoking: not someone else's, and not an org token without admin rights.
    let (status, body) = call(srv, Method::DELETE, &format!("{tokens}/{laptop_id}"), &bob, None).await;
    assert_error(status, &body, 404);
    let (status, body) = call(srv, Method::DELETE, &format!("{tokens}/{org_token_id}"), &alice, None).await;
    assert_error(status, &body, 403);
    let (status, body) = call(srv, Method::DELETE, &format!("{tokens}/no-such-id"), &alice, None).await;
    assert_error(status, &body, 404);

    // A revoked token is refused at once, though it was just used (and so cached).
    let (status, _) = get(srv, "/api/user", &laptop).await;
    assert_eq!(status, 200);
    let (status, _) = call(srv, Method::DELETE, &format!("{tokens}/{laptop_id}"), &alice, None).await;
    assert_eq!(status, 204);
    let (status, body) = get(srv, "/api/user", &laptop).await;
    assert_error(status, &body, 401);
    let (status, _) = get(srv, "/api/user", &alice).await;
    assert_eq!(status, 200, "alice's other token still works");

    let (status, _) = get(srv, &format!("{V1}/orgs/acme/members"), &org_token).await;
    assert_eq!(status, 200);
    let (status, _) = call(
        srv,
        Method::DELETE,
        &format!("{tokens}/{org_token_id}"),
        &srv.token,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = get(srv, &format!("{V1}/orgs/acme/members"), &org_token).await;
    assert_eq!(status, 401);
    let (_, list) = get(srv, &format!("{tokens}?org=acme"), &srv.token).await;
    assert!(list["tokens"][0]["revokedMs"].as_i64().is_some(), "{list}");
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

fn stored_token(kind_user: &str, expires_ms: i64) -> (AccessToken, TokenRecord) {
    let token = AccessToken::generate(&mut rand::rng());
    let record = TokenRecord {
        id: uuid::Uuid::now_v7().to_string(),
        token_hash: token.hash(),
        kind: TokenKind::Personal,
        user_id: Some(kind_user.to_owned()),
        org_id: None,
        team_id: None,
        description: "test".into(),
        created_ms: now_ms(),
        expires_ms: Some(expires_ms),
        revoked_ms: None,
        parent_id: None,
        confined_org_id: None,
        role_cap: None,
    };
    (token, record)
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let dir = temp_dir();
    let mut cfg = config(dir.path(), None);
    let clock = crate::support::manual_clock(&mut cfg);
    let srv = TestServer::start(cfg, None).await.unwrap();
    new_user(&srv, "acme", "alice", "reader").await;
    let store = srv.server.state.store.clone();
    let alice = store.user_by_login("alice").await.unwrap().unwrap();
    let now = srv.server.state.clock.now_ms();

    let token_created = crate::support::test_event(sesame::core::audit::AuditAction::TokenCreate);
    let (expired, record) = stored_token(&alice.id, now - 1_000);
    store.insert_token(&record, &token_created).await.unwrap();
    let (status, body) = get(&srv, "/api/user", expired.expose()).await;
    assert_error(status, &body, 401);

    // One that expires while cached is refused from then on.
    let (short, record) = stored_token(&alice.id, now + 1_500);
    store.insert_token(&record, &token_created).await.unwrap();
    let (status, _) = get(&srv, "/api/user", short.expose()).await;
    assert_eq!(status, 200);
    clock.advance(std::time::Duration::from_millis(1_499));
    let (status, _) = get(&srv, "/api/user", short.expose()).await;
    assert_eq!(status, 200, "still valid a millisecond before it expires");
    clock.advance(std::time::Duration::from_millis(1));
    let (status, _) = get(&srv, "/api/user", short.expose()).await;
    assert_eq!(status, 401);
    srv.stop().await;
}

async fn export(srv: &TestServer, path: &str) -> String {
    srv.export(path).await
}

fn actions(export: &str) -> Vec<(String, String)> {
    export
        .lines()
        .filter_map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            Some((v.get("action")?.as_str()?.to_owned(), v["outcome"].as_str()?.to_owned()))
        })
        .collect()
}

on_both!(
    audit,
    every_write_is_audited_and_no_token_text_reaches_the_log,
    every_write_is_audited_and_no_token_text_reaches_the_log_on_postgres
);

async fn audit(srv: &TestServer) {
    let mut secrets = vec![srv.token.clone()];
    let alice = new_user(srv, "acme", "alice", "reader").await;
    secrets.push(alice.clone());
    let members = format!("{V1}/orgs/acme/members");
    let teams = format!("{V1}/orgs/acme/teams");
    let ok = |status: u16, want: u16, body: &Value| assert_eq!(status, want, "{body}");

    let (s, b) = call(
        srv,
        Method::POST,
        &format!("{V1}/orgs"),
        &srv.token,
        Some(json!({"name": "beta"})),
    )
    .await;
    ok(s, 201, &b);
    let (s, b) = call(
        srv,
        Method::PATCH,
        &format!("{members}/alice"),
        &srv.token,
        Some(json!({"role": "editor"})),
    )
    .await;
    ok(s, 200, &b);
    let (s, b) = call(srv, Method::POST, &teams, &srv.token, Some(json!({"name": "ops"}))).await;
    ok(s, 201, &b);
    let (s, b) = call(
        srv,
        Method::PUT,
        &format!("{teams}/ops/members/alice"),
        &srv.token,
        None,
    )
    .await;
    ok(s, 204, &b);
    let (s, b) = grant(srv, "acme", "team:ops", "opener").await;
    ok(s, 200, &b);
    let (s, b) = call(
        srv,
        Method::DELETE,
        &format!("{V1}/orgs/acme/roles?subject=team:ops"),
        &srv.token,
        None,
    )
    .await;
    ok(s, 204, &b);
    let (s, b) = call(
        srv,
        Method::DELETE,
        &format!("{teams}/ops/members/alice"),
        &srv.token,
        None,
    )
    .await;
    ok(s, 204, &b);
    let (s, b) = call(
        srv,
        Method::POST,
        &format!("{V1}/tokens"),
        &srv.token,
        Some(json!({"kind": "team", "org": "acme", "team": "ops"})),
    )
    .await;
    ok(s, 201, &b);
    secrets.push(b["token"].as_str().unwrap().to_owned());
    let (s, b) = call(srv, Method::DELETE, &format!("{teams}/ops"), &srv.token, None).await;
    ok(s, 204, &b);
    let (s, b) = call(
        srv,
        Method::POST,
        &format!("{V1}/tokens"),
        &srv.token,
        Some(json!({"kind": "organization", "org": "acme"})),
    )
    .await;
    ok(s, 201, &b);
    secrets.push(b["token"].as_str().unwrap().to_owned());
    let org_token_id = b["id"].as_str().unwrap().to_owned();
    let (s, b) = call(
        srv,
        Method::DELETE,
        &format!("{V1}/tokens/{org_token_id}"),
        &srv.token,
        None,
    )
    .await;
    ok(s, 204, &b);
    let (s, b) = call(
        srv,
        Method::POST,
        &format!("{V1}/tokens"),
        &alice,
        Some(json!({"kind": "personal"})),
    )
    .await;
    ok(s, 201, &b);
    secrets.push(b["token"].as_str().unwrap().to_owned());
    // A refusal (alice is an editor, not an admin).
    let (s, b) = call(
        srv,
        Method::POST,
        &members,
        &alice,
        Some(json!({"login": "zed", "role": "admin"})),
    )
    .await;
    ok(s, 403, &b);
    let (s, b) = call(srv, Method::DELETE, &format!("{members}/alice"), &srv.token, None).await;
    ok(s, 204, &b);

    let acme = export(srv, &format!("{V1}/orgs/acme/audit")).await;
    let have = actions(&acme);
    for want in [
        "member.add",
        "member.role",
        "team.create",
        "team.member.add",
        "role.grant",
        "role.revoke",
        "team.member.remove",
        "team.delete",
        "token.create",
        "token.revoke",
        "member.remove",
    ] {
        assert!(
            have.contains(&(want.to_owned(), "ok".to_owned())),
            "{want} missing from {have:?}"
        );
    }
    assert!(
        have.contains(&("access.denied".to_owned(), "denied".to_owned())),
        "{have:?}"
    );
    let beta = export(srv, &format!("{V1}/orgs/beta/audit")).await;
    assert!(
        actions(&beta).contains(&("org.create".to_owned(), "ok".to_owned())),
        "{beta}"
    );
    let instance = export(srv, &format!("{V1}/audit")).await;
    assert!(
        actions(&instance).contains(&("token.create".to_owned(), "ok".to_owned())),
        "{instance}"
    );

    for text in [&acme, &beta, &instance] {
        for secret in &secrets {
            let body = secret.strip_prefix("sesame_").unwrap();
            assert!(!text.contains(body), "a token's text is in the audit log");
        }
    }
}

async fn sesame(srv: &TestServer, token: &str, args: &[&str]) -> (i32, String, String) {
    crate::support::run_cli(srv, token, args).await
}

#[tokio::test]
async fn member_and_token_commands_from_the_command_line() {
    let dir = temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;

    let (code, out, err) = sesame(
        &srv,
        &srv.token,
        &["member", "add", "erin", "--role", "editor", "--org", "acme", "--json"],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let added: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(added["member"]["role"], json!("editor"));
    let erin = added["token"].as_str().unwrap().to_owned();

    let (code, out, err) = sesame(
        &srv,
        &erin,
        &[
            "token",
            "create",
            "--description",
            "cli",
            "--expires-in-days",
            "7",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    let (status, who) = get(&srv, "/api/user", &token).await;
    assert_eq!((status, &who["githubLogin"]), (200, &json!("erin")));

    let (code, out, _) = sesame(&srv, &erin, &["member", "ls", "--org", "acme"]).await;
    assert_eq!(code, 0);
    assert!(
        out.lines().any(|l| l.starts_with("erin") && l.contains("editor")),
        "{out}"
    );
    let (code, out, _) = sesame(&srv, &erin, &["token", "ls"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains(created["id"].as_str().unwrap()) && !out.contains(&token),
        "{out}"
    );

    // An editor may not manage members: refused, exit code 3.
    let (code, _, err) = sesame(
        &srv,
        &erin,
        &["member", "add", "frank", "--role", "reader", "--org", "acme"],
    )
    .await;
    assert_eq!(code, 3, "{err}");

    let id = created["id"].as_str().unwrap();
    let (code, out, err) = sesame(&srv, &erin, &["token", "revoke", id]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (status, _) = get(&srv, "/api/user", &token).await;
    assert_eq!(status, 401);
    srv.stop().await;
}

on_both!(
    lineage,
    a_token_never_outlives_the_token_that_made_it,
    a_token_never_outlives_the_token_that_made_it_on_postgres
);

async fn make_token(srv: &TestServer, with: &str, body: Value) -> (u16, Value) {
    call(srv, Method::POST, &format!("{V1}/tokens"), with, Some(body)).await
}

async fn lineage(srv: &TestServer) {
    let alice = new_user(srv, "acme", "alice", "admin").await;

    // Personal: a 1-day token makes children that expire with it, and may not ask for longer.
    let (status, day) = make_token(srv, &alice, json!({"kind": "personal", "expiresInDays": 1})).await;
    assert_eq!(status, 201, "{day}");
    let day_token = day["token"].as_str().unwrap().to_owned();
    let day_expiry = day["expiresMs"].as_i64().unwrap();
    let (status, child) = make_token(srv, &day_token, json!({"kind": "personal"})).await;
    assert_eq!(status, 201, "{child}");
    assert_eq!(
        child["expiresMs"],
        json!(day_expiry),
        "no expiry asked: clamped to the parent's"
    );
    assert_eq!(child["parentId"], day["id"], "{child}");
    for days in [2, 30, 365] {
        let (status, body) = make_token(srv, &day_token, json!({"kind": "personal", "expiresInDays": days})).await;
        assert_error(status, &body, 400);
        assert!(body["message"].as_str().unwrap().contains("outlive"), "{body}");
    }
    let child_token = child["token"].as_str().unwrap().to_owned();
    let (status, grandchild) = make_token(srv, &child_token, json!({"kind": "personal"})).await;
    assert_eq!(status, 201, "{grandchild}");
    assert_eq!(grandchild["expiresMs"], json!(day_expiry));
    let grandchild_token = grandchild["token"].as_str().unwrap().to_owned();
    // An org token made by the 1-day token expires with it too.
    let (status, org_child) = make_token(srv, &day_token, json!({"kind": "organization", "org": "acme"})).await;
    assert_eq!(status, 201, "{org_child}");
    assert_eq!(org_child["expiresMs"], json!(day_expiry));
    let org_child_token = org_child["token"].as_str().unwrap().to_owned();

    // All in use (and so cached); revoking the 1-day token revokes everything it made, at once.
    for t in [&day_token, &child_token, &grandchild_token, &org_child_token] {
        let (status, _) = get(srv, &format!("{V1}/orgs"), t).await;
        assert_eq!(status, 200);
    }
    let day_id = day["id"].as_str().unwrap();
    let (status, _) = call(srv, Method::DELETE, &format!("{V1}/tokens/{day_id}"), &alice, None).await;
    assert_eq!(status, 204);
    for t in [&day_token, &child_token, &grandchild_token, &org_child_token] {
        let (status, body) = get(srv, &format!("{V1}/orgs"), t).await;
        assert_error(status, &body, 401);
    }
    let (status, _) = get(srv, &format!("{V1}/orgs"), &alice).await;
    assert_eq!(status, 200, "the parent's own parent lives on");
    let (_, list) = get(srv, &format!("{V1}/tokens"), &alice).await;
    for id in [&child["id"], &grandchild["id"]] {
        let t = list["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| &t["id"] == id)
            .unwrap();
        assert!(t["revokedMs"].as_i64().is_some(), "{t}");
    }

    // Organization tokens: a 2-day org token mints org and team tokens bounded by it; revoking it takes them along.
    let (status, parent) = make_token(
        srv,
        &srv.token,
        json!({"kind": "organization", "org": "acme", "expiresInDays": 2}),
    )
    .await;
    assert_eq!(status, 201, "{parent}");
    let parent_token = parent["token"].as_str().unwrap().to_owned();
    let parent_expiry = parent["expiresMs"].as_i64().unwrap();
    let (status, body) = make_token(
        srv,
        &parent_token,
        json!({"kind": "organization", "org": "acme", "expiresInDays": 3}),
    )
    .await;
    assert_error(status, &body, 400);
    let (status, org2) = make_token(srv, &parent_token, json!({"kind": "organization", "org": "acme"})).await;
    assert_eq!(status, 201, "{org2}");
    assert_eq!(org2["expiresMs"], json!(parent_expiry));
    let (status, org1day) = make_token(
        srv,
        &parent_token,
        json!({"kind": "organization", "org": "acme", "expiresInDays": 1}),
    )
    .await;
    assert_eq!(status, 201, "a shorter explicit expiry is fine: {org1day}");
    let org2_token = org2["token"].as_str().unwrap().to_owned();
    let (status, _) = call(
        srv,
        Method::POST,
        &format!("{V1}/orgs/acme/teams"),
        &org2_token,
        Some(json!({"name": "ci"})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, team) = make_token(srv, &org2_token, json!({"kind": "team", "org": "acme", "team": "ci"})).await;
    assert_eq!(status, 201, "{team}");
    assert_eq!(team["expiresMs"], json!(parent_expiry));
    let team_token = team["token"].as_str().unwrap().to_owned();
    for t in [&parent_token, &org2_token, &team_token] {
        let (status, _) = get(srv, "/api/user", t).await;
        assert_eq!(status, 200);
    }
    let parent_id = parent["id"].as_str().unwrap();
    let (status, _) = call(
        srv,
        Method::DELETE,
        &format!("{V1}/tokens/{parent_id}"),
        &srv.token,
        None,
    )
    .await;
    assert_eq!(status, 204);
    for t in [&parent_token, &org2_token, &team_token] {
        let (status, body) = get(srv, "/api/user", t).await;
        assert_error(status, &body, 401);
    }
    let (status, _) = get(srv, "/api/user", &srv.token).await;
    assert_eq!(status, 200);

    // A token revoked behind this replica's cache (as by another replica) makes nothing more.
    let (status, short) = make_token(srv, &alice, json!({"kind": "personal", "expiresInDays": 5})).await;
    assert_eq!(status, 201);
    let short_token = short["token"].as_str().unwrap().to_owned();
    let (status, _) = get(srv, "/api/user", &short_token).await;
    assert_eq!(status, 200, "now cached");
    let store = srv.server.state.store.clone();
    let revoked = store
        .revoke_token(short["id"].as_str().unwrap(), now_ms(), &|_| {
            crate::support::test_event(sesame::core::audit::AuditAction::TokenRevoke)
        })
        .await
        .unwrap();
    assert!(revoked.revoked);
    let count = |list: &Value| list["tokens"].as_array().unwrap().len();
    let (_, before) = get(srv, &format!("{V1}/tokens"), &alice).await;
    let (status, body) = make_token(srv, &short_token, json!({"kind": "personal"})).await;
    assert_error(status, &body, 401);
    let (_, after) = get(srv, &format!("{V1}/tokens"), &alice).await;
    assert_eq!(count(&before), count(&after), "nothing was stored: {after}");
}

on_both!(
    invitations,
    org_admins_invite_and_users_consent,
    org_admins_invite_and_users_consent_on_postgres
);

on_both!(
    pending_invitations_are_bounded,
    an_org_has_at_most_a_thousand_pending_invitations,
    an_org_has_at_most_a_thousand_pending_invitations_on_postgres
);

async fn pending_invitations_are_bounded(srv: &TestServer) {
    let members = format!("{V1}/orgs/acme/members");
    let alice = new_user(srv, "acme", "alice", "admin").await;
    let invite = |login: String| {
        let (members, alice) = (members.clone(), alice.clone());
        async move {
            call(
                srv,
                Method::POST,
                &members,
                &alice,
                Some(json!({"login": login, "role": "reader"})),
            )
            .await
        }
    };
    let max = sesame::server::invitations::MAX_PENDING_PER_ORG;
    for i in 0..max {
        let (status, body) = invite(format!("guest{i}")).await;
        assert_eq!(status, 202, "{i}: {body}");
    }
    // One more is refused, in ESC's error shape, and stores nothing.
    let (status, body) = invite("one-too-many".into()).await;
    assert_error(status, &body, 400);
    assert!(
        body["message"].as_str().unwrap().contains("pending invitations"),
        "{body}"
    );
    let (status, list) = get(srv, &format!("{V1}/orgs/acme/invitations"), &alice).await;
    assert_eq!(status, 200, "{list}");
    let logins: Vec<&str> = list["invitations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["login"].as_str())
        .collect();
    assert_eq!(logins.len(), max, "{}", logins.len());
    assert!(!logins.contains(&"one-too-many"));
    // Renewing a pending invitation is still allowed; withdrawing one makes room again.
    let (status, body) = invite("guest0".into()).await;
    assert_eq!(status, 202, "{body}");
    let (status, _) = call(
        srv,
        Method::DELETE,
        &format!("{V1}/orgs/acme/invitations/guest1"),
        &alice,
        None,
    )
    .await;
    assert!((200..300).contains(&status), "{status}");
    let (status, body) = invite("one-too-many".into()).await;
    assert_eq!(status, 202, "{body}");
}

/// An invitation's body with what differs per login taken out.
fn invitation_shape(body: &Value) -> Value {
    let mut b = body.clone();
    for key in ["id", "login", "createdMs"] {
        assert!(
            b["invitation"][key].is_string() || b["invitation"][key].is_i64(),
            "{body}"
        );
        b["invitation"][key] = Value::Null;
    }
    b
}

async fn invitations(srv: &TestServer) {
    let members = format!("{V1}/orgs/acme/members");
    let alice = new_user(srv, "acme", "alice", "admin").await;
    let (status, _) = call(
        srv,
        Method::POST,
        &format!("{V1}/orgs"),
        &srv.token,
        Some(json!({"name": "beta"})),
    )
    .await;
    assert_eq!(status, 201);
    // bob and carol exist (in beta only), with display names nobody in acme should learn.
    let mut tokens = std::collections::HashMap::new();
    for login in ["bob", "carol"] {
        let (status, body) = call(
            srv,
            Method::POST,
            &format!("{V1}/orgs/beta/members"),
            &srv.token,
            Some(json!({"login": login, "name": format!("Secret Name of {login}"), "role": "reader"})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        tokens.insert(login, body["token"].as_str().unwrap().to_owned());
    }
    let (bob, carol) = (tokens["bob"].clone(), tokens["carol"].clone());

    // An org admin's add is an invitation, answered the same whether the login exists or not.
    let invite = |login: &'static str, role: &'static str| {
        let (members, alice) = (members.clone(), alice.clone());
        async move {
            call(
                srv,
                Method::POST,
                &members,
                &alice,
                Some(json!({"login": login, "role": role, "name": "ignored"})),
            )
            .await
        }
    };
    let (status_bob, to_bob) = invite("bob", "admin").await;
    let (status_ghost, to_ghost) = invite("ghost", "admin").await;
    assert_eq!((status_bob, status_ghost), (202, 202), "{to_bob} {to_ghost}");
    assert_eq!(invitation_shape(&to_bob), invitation_shape(&to_ghost));
    assert_eq!(to_bob["invitation"]["login"], json!("bob"));
    for body in [&to_bob, &to_ghost] {
        let text = body.to_string();
        assert!(
            !text.contains("Secret Name") && !text.contains("ignored") && body.get("token").is_none(),
            "{text}"
        );
        assert!(body["invitation"].get("name").is_none(), "{text}");
    }
    // Inviting again keeps the invitation (same id), with the new role.
    let (status, again) = invite("bob", "editor").await;
    assert_eq!(status, 202);
    assert_eq!(again["invitation"]["id"], to_bob["invitation"]["id"]);
    assert_eq!(again["invitation"]["role"], json!("editor"));
    // A member cannot be invited; nor may a non-admin invite.
    let (status, body) = invite("alice", "reader").await;
    assert_error(status, &body, 409);

    // Until bob accepts, he is no member: acme is invisible to him and its admin's list does not show him.
    let (status, _) = get(srv, &members, &bob).await;
    assert_eq!(status, 404);
    let (_, list) = get(srv, &members, &alice).await;
    assert_eq!(logins(&list), ["alice"]);
    let (status, pending) = get(srv, &format!("{V1}/orgs/acme/invitations"), &alice).await;
    assert_eq!(status, 200, "{pending}");
    let pending_logins = crate::support::each_str(&pending["invitations"], "login");
    assert_eq!(pending_logins, ["bob", "ghost"]);
    let (status, body) = get(srv, &format!("{V1}/orgs/acme/invitations"), &bob).await;
    assert_error(status, &body, 404);

    // bob sees his invitation, and only his.
    let (status, mine) = get(srv, &format!("{V1}/invitations"), &bob).await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["invitations"].as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(mine["invitations"][0]["org"], json!("acme"));
    assert_eq!(mine["invitations"][0]["role"], json!("editor"));
    assert_eq!(mine["invitations"][0]["invitedBy"], json!("alice"));
    let bob_invitation = mine["invitations"][0]["id"].as_str().unwrap().to_owned();
    let (_, theirs) = get(srv, &format!("{V1}/invitations"), &carol).await;
    assert_eq!(theirs["invitations"], json!([]));

    // Nobody else can answer it: not carol, not alice, not an org token.
    let accept = format!("{V1}/invitations/{bob_invitation}/accept");
    for t in [&carol, &alice] {
        let (status, body) = call(srv, Method::POST, &accept, t, None).await;
        assert_error(status, &body, 404);
        let (status, body) = call(
            srv,
            Method::POST,
            &format!("{V1}/invitations/{bob_invitation}/decline"),
            t,
            None,
        )
        .await;
        assert_error(status, &body, 404);
    }
    let (status, org_token) = make_token(srv, &srv.token, json!({"kind": "organization", "org": "acme"})).await;
    assert_eq!(status, 201);
    let (status, body) = call(srv, Method::POST, &accept, org_token["token"].as_str().unwrap(), None).await;
    assert_error(status, &body, 404);

    // bob accepts: he is a member with the invited role, at once; the invitation is gone.
    let (status, joined) = call(srv, Method::POST, &accept, &bob, None).await;
    assert_eq!(status, 200, "{joined}");
    assert_eq!(joined, json!({"org": "acme", "role": "editor"}));
    let (status, _) = get(srv, &members, &bob).await;
    assert_eq!(status, 200);
    let (_, list) = get(srv, &members, &alice).await;
    assert_eq!(logins(&list), ["alice", "bob"]);
    let (status, body) = call(srv, Method::POST, &accept, &bob, None).await;
    assert_error(status, &body, 404);

    // carol declines: she never joins.
    let (status, _) = invite("carol", "admin").await;
    assert_eq!(status, 202);
    let (_, mine) = get(srv, &format!("{V1}/invitations"), &carol).await;
    let carol_invitation = mine["invitations"][0]["id"].as_str().unwrap().to_owned();
    let (status, _) = call(
        srv,
        Method::POST,
        &format!("{V1}/invitations/{carol_invitation}/decline"),
        &carol,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = get(srv, &members, &carol).await;
    assert_eq!(status, 404);
    let (_, mine) = get(srv, &format!("{V1}/invitations"), &carol).await;
    assert_eq!(mine["invitations"], json!([]));

    // An org admin withdraws a pending invitation.
    let (status, _) = call(
        srv,
        Method::DELETE,
        &format!("{V1}/orgs/acme/invitations/ghost"),
        &alice,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, body) = call(
        srv,
        Method::DELETE,
        &format!("{V1}/orgs/acme/invitations/ghost"),
        &alice,
        None,
    )
    .await;
    assert_error(status, &body, 404);
    let (_, pending) = get(srv, &format!("{V1}/orgs/acme/invitations"), &alice).await;
    assert_eq!(pending["invitations"], json!([]));

    // The instance administrator still adds directly, and creates new users with their token.
    assert!(add_member(srv, "acme", "dora", "reader").await.is_some());
    assert_eq!(add_member(srv, "acme", "carol", "reader").await, None);

    let acme = export(srv, &format!("{V1}/orgs/acme/audit")).await;
    let have = actions(&acme);
    for want in [
        "member.invite",
        "member.join",
        "member.decline",
        "member.invite.withdraw",
    ] {
        assert!(
            have.contains(&(want.to_owned(), "ok".to_owned())),
            "{want} missing from {have:?}"
        );
    }
}

#[tokio::test]
async fn invitations_from_the_command_line() {
    let dir = temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    let alice = new_user(&srv, "acme", "alice", "admin").await;
    let (status, _) = call(
        &srv,
        Method::POST,
        &format!("{V1}/orgs"),
        &srv.token,
        Some(json!({"name": "beta"})),
    )
    .await;
    assert_eq!(status, 201);
    let gina = new_user(&srv, "beta", "gina", "reader").await;
    let hank = new_user(&srv, "beta", "hank", "reader").await;

    let (code, out, err) = sesame(
        &srv,
        &alice,
        &["member", "add", "gina", "--role", "opener", "--org", "acme"],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("invited gina to acme as opener"), "{out}");
    let (code, out, err) = sesame(&srv, &gina, &["invitation", "ls", "--json"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    let id = listed["invitations"][0]["id"].as_str().unwrap().to_owned();
    let (code, out, _) = sesame(&srv, &gina, &["invitation", "ls"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains(&id) && out.contains("acme") && out.contains("alice"),
        "{out}"
    );
    let (code, _, _) = sesame(&srv, &gina, &["member", "ls", "--org", "acme"]).await;
    assert_eq!(code, 3, "not a member before accepting");
    let (code, out, err) = sesame(&srv, &gina, &["invitation", "accept", &id]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("joined acme as opener"), "{out}");
    let (code, out, _) = sesame(&srv, &gina, &["member", "ls", "--org", "acme"]).await;
    assert_eq!(code, 0);
    assert!(
        out.lines().any(|l| l.starts_with("gina") && l.contains("opener")),
        "{out}"
    );

    let (code, _, _) = sesame(
        &srv,
        &alice,
        &["member", "add", "hank", "--role", "admin", "--org", "acme"],
    )
    .await;
    assert_eq!(code, 0);
    let (_, out, _) = sesame(&srv, &hank, &["invitation", "ls", "--json"]).await;
    let listed: Value = serde_json::from_str(&out).unwrap();
    let id = listed["invitations"][0]["id"].as_str().unwrap().to_owned();
    let (code, out, err) = sesame(&srv, &hank, &["invitation", "decline", &id]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, _) = sesame(&srv, &hank, &["invitation", "accept", &id]).await;
    assert_eq!(code, 3, "declined is gone");
    let (code, _, _) = sesame(&srv, &hank, &["member", "ls", "--org", "acme"]).await;
    assert_eq!(code, 3);
    srv.stop().await;
}
