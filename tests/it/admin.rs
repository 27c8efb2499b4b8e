//! The access-administration API end to end on SQLite: orgs, members, teams, role grants and tokens; that roles
//! take effect at once on this replica; that orgs a caller has no role in look exactly like missing ones; that
//! every write is audited and no token's text reaches the audit log; and `sesame member|token` from the command
//! line.

use reqwest::Method;
use serde_json::{Value, json};
use sesame::core::tokens::AccessToken;
use sesame::store::{TokenKind, TokenRecord};

use crate::support::{PgDb, TestServer, config, temp_dir};

const BIN: &str = env!("CARGO_BIN_EXE_sesame");
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

/// A scenario as two tests: on SQLite, and on a fresh PostgreSQL database (skipped when there is none).
macro_rules! on_both {
    ($scenario:ident, $sqlite:ident, $postgres:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            let dir = temp_dir();
            let srv = TestServer::start(config(dir.path(), None), None).await.unwrap();
            $scenario(&srv).await;
            srv.stop().await;
        }

        #[tokio::test]
        async fn $postgres() {
            let Some(db) = PgDb::create().await else {
                return;
            };
            let dir = temp_dir();
            let srv = TestServer::start(config(dir.path(), Some(&db.url)), None)
                .await
                .unwrap();
            $scenario(&srv).await;
            srv.stop().await;
            db.drop_db().await;
        }
    };
}

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

    // The token alice got works, and her admin role lets her add members.
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
    assert_eq!(status, 201, "{body}");
    assert!(body["token"].as_str().is_some_and(|t| t.starts_with("sesame_")));

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
    assert_eq!(status, 201, "{body}");
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
    assert_eq!(logins(&list), ["alice", "bob", "carol", "dave"]);
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
    assert_eq!(status, 201, "{body}");

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
    assert_eq!(status, 201);
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
    };
    (token, record)
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let dir = temp_dir();
    let srv = TestServer::start(config(dir.path(), None), None).await.unwrap();
    new_user(&srv, "acme", "alice", "reader").await;
    let store = srv.server.state.store.clone();
    let alice = store.user_by_login("alice").await.unwrap().unwrap();
    let now = now_ms();

    let (expired, record) = stored_token(&alice.id, now - 1_000);
    store.insert_token(&record).await.unwrap();
    let (status, body) = get(&srv, "/api/user", expired.expose()).await;
    assert_error(status, &body, 401);

    // One that expires while cached is refused from then on.
    let (short, record) = stored_token(&alice.id, now + 1_500);
    store.insert_token(&record).await.unwrap();
    let (status, _) = get(&srv, "/api/user", short.expose()).await;
    assert_eq!(status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1_700)).await;
    let (status, _) = get(&srv, "/api/user", short.expose()).await;
    assert_eq!(status, 401);
    srv.stop().await;
}

async fn export(srv: &TestServer, path: &str) -> String {
    let resp = srv
        .http
        .get(format!("{}{path}", srv.base))
        .header("Authorization", format!("token {}", srv.token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
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
    let out = tokio::process::Command::new(BIN)
        .args(args)
        .env("SESAME_URL", &srv.base)
        .env("SESAME_TOKEN", token)
        .env_remove("SESAME_ORG")
        .output()
        .await
        .expect("run sesame");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn member_and_token_commands_from_the_command_line() {
    let dir = temp_dir();
    let srv = TestServer::start(config(dir.path(), None), None).await.unwrap();

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
