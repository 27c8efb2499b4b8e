//! Rotations per second for `fn::rotate::password`: the pure part (a password drawn and the `{current, previous}`
//! state built; the state spliced into a definition by byte range) and the whole `POST …/rotate` of a server started
//! in-process on SQLite (evaluation, sealing under the environment's DEK, splice, conditional revision write with
//! its audit record), one request at a time.
//!
//! Run: `cargo bench --bench rotate`. Rotations per second = 1 / the time per iteration.

#[path = "../tests/it/support.rs"]
#[allow(dead_code, unused_imports, unused_macros)]
mod support;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use sesame::core::env::splice::{NewState, splice_states};
use sesame::server::esc::rotators::{Password, rotate};

const DOC: &str = "# credentials\nvalues:\n  db:\n    host: db.example.com # primary\n    password:\n      fn::rotate::password:\n        inputs: {length: 24}\n  user: admin\n";

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("rotate_password");
    group.throughput(Throughput::Elements(1));
    let inputs = json!({"length": 24});
    let state = rotate(&Password, &inputs, None).unwrap();
    group.bench_function("generate", |b| {
        b.iter(|| rotate(&Password, &inputs, Some(&state)).unwrap())
    });
    let new = [NewState {
        doc_path: r#"values.db.password["fn::rotate::password"].state"#.into(),
        entries: vec![
            ("current".into(), "{fn::secret: {ciphertext: AAAABBBBCCCCDDDD}}".into()),
            ("previous".into(), "{fn::secret: {ciphertext: EEEEFFFFGGGGHHHH}}".into()),
        ],
    }];
    group.bench_function("splice", |b| b.iter(|| splice_states(DOC, &new).unwrap()));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = support::temp_dir();
    let srv = rt
        .block_on(support::TestServer::start(support::config(dir.path(), None), None))
        .unwrap();
    let base = format!("{}/api/esc/environments/acme/p/app", srv.base);
    let http = reqwest::Client::new();
    let auth = format!("token {}", srv.token);
    rt.block_on(async {
        let r = http
            .post(format!("{}/api/esc/environments/acme", srv.base))
            .header("Authorization", &auth)
            .json(&json!({"project": "p", "name": "app"}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        let r = http
            .patch(&base)
            .header("Authorization", &auth)
            .body(DOC)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    });
    group.bench_function("endpoint_sqlite", |b| {
        b.iter(|| {
            rt.block_on(async {
                let r = http
                    .post(format!("{base}/rotate"))
                    .header("Authorization", &auth)
                    .json(&json!({}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 200);
            })
        })
    });
    group.finish();
    rt.block_on(srv.stop());
}

criterion_group!(benches, bench);
criterion_main!(benches);
