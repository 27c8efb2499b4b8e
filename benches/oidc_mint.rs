//! OIDC tokens minted per second: claims built, signed with the current key (RS256 over 2048-bit RSA, the default,
//! and ES256), one at a time on one core, through `Issuer::mint` of a server started in-process (the keys are made,
//! sealed and stored as in production; the signing key is unsealed once, then cached).
//!
//! Run: `cargo bench --bench oidc_mint`. Tokens per second = 1 / the time per iteration.

#[path = "../tests/it/support.rs"]
#[allow(dead_code, unused_imports, unused_macros)]
mod support;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sesame::core::oidc::{Alg, EnvFacts, MintContext, TokenRequest};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let env = EnvFacts {
        project: "app".into(),
        name: "prod".into(),
        id: "0190aaaa-0000-7000-8000-000000000001".into(),
    };
    let ctx = MintContext {
        org_name: "acme".into(),
        org_id: "0190aaaa-0000-7000-8000-000000000000".into(),
        current: env.clone(),
        root: env,
        user_login: Some("admin".into()),
    };
    let custom = TokenRequest::new(
        "custom-audience",
        Some("https://registry.example.com"),
        None,
        None,
        Some("15m"),
    )
    .unwrap();
    let attrs = vec!["currentEnvironment.name".to_owned(), "pulumi.user.login".to_owned()];
    let login = TokenRequest::new("login", None, Some("aws"), Some(attrs.as_slice()), None).unwrap();
    let mut group = c.benchmark_group("oidc_mint");
    group.throughput(Throughput::Elements(1));
    for alg in [Alg::Rs256, Alg::Es256] {
        let dir = support::temp_dir();
        let mut cfg = support::config(dir.path(), None);
        cfg.oidc.keys.alg = alg;
        let srv = rt.block_on(support::TestServer::start(cfg, None)).unwrap();
        let issuer = srv.server.state.oidc.clone();
        let iss = srv.server.state.issuer_url.clone();
        for (family, req) in [("custom-audience", &custom), ("login", &login)] {
            group.bench_function(format!("{}/{family}", alg.as_str()), |b| {
                b.iter(|| rt.block_on(issuer.mint(&iss, &ctx, req)).unwrap())
            });
        }
        rt.block_on(srv.stop());
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
