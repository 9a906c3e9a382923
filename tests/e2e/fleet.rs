//! The fleet: three sidecars sharing one real Redis (`redis-server`, started by the test).
//! A revocation accepted by one is refused by all three within a second; a sidecar that was
//! down catches up when it starts; a CAEP event refuses a subject's tokens everywhere, and
//! forged or replayed events change nothing; a Redis outage and restart loses no known
//! revocation and turns no cached token into a 5xx; introspection answers are shared.
#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant, SystemTime};

use crate::common::redis_server::RedisServer;
use crate::common::*;
use scopegate::dev::{AccessTokenRequest, DevIssuer, DevIssuerConfig, Endpoint, SecurityEvent};
use scopegate::server::Running;

const AUDIENCE: &str = "https://api.test";
const RECEIVER: &str = "https://receiver.test";
const ADMIN_TOKEN: &str = "fleet-admin-token-0123456789";

const CONFIG: &str = r#"
[listener]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
token_file = "{token_file}"
[upstream]
url = "{upstream}"
[[issuer]]
url = "{issuer}"
audiences = ["https://api.test"]
token_validation = "auto"
[issuer.introspection]
client_id = "{client_id}"
client_secret_file = "{secret_file}"
positive_ttl = "1h"
[[route]]
name = "read"
path = "/read/**"
scopes = ["read"]
[fleet]
{fleet}
key_prefix = "fleet-test:"
connect_timeout = "1s"
command_timeout = "500ms"
[ssf]
issuer = "{issuer}"
jwks_uri = "{jwks}"
audience = "https://receiver.test"
"#;

struct Fleet {
    redis: RedisServer,
    issuer: DevIssuer,
    upstream: Upstream,
    client: IntrospectionClient,
    token_file: std::path::PathBuf,
    sidecars: Vec<Running>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Fleet {
    async fn start(sidecars: usize) -> Fleet {
        Fleet::start_on(RedisServer::start(), sidecars).await
    }

    async fn start_on(redis: RedisServer, sidecars: usize) -> Fleet {
        let issuer = dev_issuer(DevIssuerConfig {
            opaque_access_tokens: true,
            default_audience: Some(AUDIENCE.into()),
            ..DevIssuerConfig::default()
        })
        .await;
        let client = IntrospectionClient::register(&issuer, "client_secret_basic");
        let token_file =
            std::env::temp_dir().join(format!("scopegate-fleet-admin-{}-{}", std::process::id(), redis.port));
        std::fs::write(&token_file, ADMIN_TOKEN).unwrap();
        let mut fleet = Fleet {
            redis,
            issuer,
            upstream: Upstream::start().await,
            client,
            token_file,
            sidecars: Vec::new(),
        };
        for _ in 0..sidecars {
            let sidecar = fleet.sidecar().await;
            fleet.sidecars.push(sidecar);
        }
        fleet
    }

    fn config(&self) -> scopegate::config::Config {
        let text = CONFIG
            .replace("{token_file}", self.token_file.to_str().unwrap())
            .replace("{client_id}", &self.client.client_id)
            .replace("{secret_file}", self.client.secret_file.to_str().unwrap())
            .replace("{fleet}", &self.fleet_section())
            .replace("{jwks}", &self.issuer.jwks_uri());
        config(&text, &self.upstream.url(), self.issuer.issuer())
    }

    /// Where the sidecars find Redis: plainly, or with TLS against the test CA and with the
    /// password from a file.
    fn fleet_section(&self) -> String {
        match &self.redis.tls {
            None => format!("url = {:?}", self.redis.url()),
            Some((port, ca, password)) => {
                let password_file = self.token_file.with_extension("redis-password");
                std::fs::write(&password_file, password).unwrap();
                format!(
                    "url = \"rediss://localhost:{port}/0\"\nca_file = {:?}\npassword_file = {:?}",
                    ca.to_str().unwrap(),
                    password_file.to_str().unwrap()
                )
            }
        }
    }

    /// A sidecar with keys, subscribed to the fleet and holding its revocations.
    async fn sidecar(&self) -> Running {
        let sidecar = start_ready_proxy(self.config()).await;
        eventually("the sidecar joins the fleet", || connected(&sidecar)).await;
        sidecar
    }

    fn opaque(&self, sub: &str) -> String {
        self.issuer.mint_access_token(&AccessTokenRequest {
            sub: sub.into(),
            client_id: self.client.client_id.clone(),
            ..AccessTokenRequest::new("read", &[AUDIENCE])
        })
    }

    /// A JWT for `sub` (verified locally), issued a few seconds ago.
    fn jwt(&self, sub: &str) -> String {
        self.jwt_issued(sub, Some(now() - 5))
    }

    /// A JWT for `sub` with the given `iat` (none: without one).
    fn jwt_issued(&self, sub: &str, iat: Option<u64>) -> String {
        let key = self.issuer.current_key();
        let mut jti = [0u8; 8];
        aws_lc_rs::rand::fill(&mut jti).unwrap();
        let mut claims = serde_json::json!({
            "iss": self.issuer.issuer(), "aud": AUDIENCE, "exp": now() + 600,
            "scope": "read", "sub": sub, "jti": scopegate::dev::b64url(&jti),
        });
        if let Some(iat) = iat {
            claims["iat"] = iat.into();
        }
        scopegate::dev::mint(
            &serde_json::json!({"alg": key.alg_name(), "typ": "at+jwt", "kid": key.kid()}),
            &claims,
            &key,
        )
    }

    fn receiver(&self, index: usize) -> String {
        format!("http://{}/ssf/events", self.sidecars[index].admin_addr)
    }

    /// The statuses the sidecars answer for `token`.
    async fn statuses(&self, token: &str) -> Vec<u16> {
        let mut statuses = Vec::new();
        for sidecar in &self.sidecars {
            statuses.push(status_at(sidecar, token).await);
        }
        statuses
    }

    /// Polls every 10 ms, for at most `limit`, until every sidecar refuses `token` (401);
    /// returns how long that took, or `None`.
    async fn refused_everywhere_within(&self, token: &str, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        loop {
            let statuses = self.statuses(token).await;
            assert!(statuses.iter().all(|s| *s < 500), "no 5xx while polling: {statuses:?}");
            if statuses.iter().all(|s| *s == 401) {
                return Some(start.elapsed());
            }
            if start.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.token_file);
        let _ = std::fs::remove_file(self.token_file.with_extension("redis-password"));
    }
}

fn connected(sidecar: &Running) -> bool {
    sidecar.app.metrics.fleet_connected.get() == 1
}

async fn status_at(sidecar: &Running, token: &str) -> u16 {
    client()
        .get(format!("http://{}/read/x", sidecar.addr))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `POST /cache/evict` with the admin token (or `bearer`), as status and JSON body.
async fn evict(sidecar: &Running, token: &str, bearer: Option<&str>) -> (u16, serde_json::Value) {
    let response = client()
        .post(format!("http://{}/cache/evict", sidecar.admin_addr))
        .bearer_auth(bearer.unwrap_or(ADMIN_TOKEN))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_sidecar_is_refused_by_all_three_within_a_second() {
    let fleet = Fleet::start(3).await;
    let token = fleet.jwt("alice");
    assert_eq!(fleet.statuses(&token).await, [200, 200, 200]);

    // Fleet-wide actions need the admin token.
    assert_eq!(
        evict(&fleet.sidecars[0], &token, Some("wrong-token-0123456789"))
            .await
            .0,
        401
    );
    assert_eq!(
        fleet.statuses(&token).await,
        [200, 200, 200],
        "a refused eviction did nothing"
    );

    let (status, body) = evict(&fleet.sidecars[0], &token, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["fleet"], "published", "{body}");
    let took = fleet.refused_everywhere_within(&token, Duration::from_secs(1)).await;
    assert!(took.is_some(), "every sidecar refuses the token within a second");

    // The fleet is fixed at start: a reload that changes it says a restart is needed, and
    // the sidecar stays in the fleet it joined.
    let mut changed = fleet.config();
    changed.fleet.as_mut().unwrap().key_prefix = "another-fleet:".into();
    changed.source_hash = "changed".into();
    let report = fleet.sidecars[0].app.apply(changed);
    assert!(report.restart_required.contains(&"fleet"), "{report:?}");
    assert!(connected(&fleet.sidecars[0]));

    // Propagation over 20 revocations, each accepted by a different sidecar: from the admin
    // answer until every sidecar's revocation set holds it (polled every millisecond), and
    // until every sidecar answers 401 (three HTTP requests per poll, every 10 ms).
    let (mut into_sets, mut into_answers) = (Vec::new(), Vec::new());
    for round in 0..20 {
        let token = fleet.jwt(&format!("user-{round}"));
        assert_eq!(fleet.statuses(&token).await, [200, 200, 200]);
        let held: Vec<usize> = fleet
            .sidecars
            .iter()
            .map(|s| s.app.app().auth.revocations().len())
            .collect();
        assert_eq!(evict(&fleet.sidecars[round % 3], &token, None).await.0, 200);
        let start = Instant::now();
        while fleet
            .sidecars
            .iter()
            .zip(&held)
            .any(|(s, before)| s.app.app().auth.revocations().len() <= *before)
        {
            assert!(
                start.elapsed() < Duration::from_secs(1),
                "every set holds it within a second"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        into_sets.push(start.elapsed());
        let took = fleet.refused_everywhere_within(&token, Duration::from_secs(1)).await;
        assert!(took.is_some(), "refused everywhere within a second");
        into_answers.push(start.elapsed());
    }
    for (what, latencies) in [
        ("in every set", &mut into_sets),
        ("refused by every sidecar", &mut into_answers),
    ] {
        latencies.sort();
        eprintln!(
            "fleet propagation over {} revocations, {what}: median {:?}, max {:?}",
            latencies.len(),
            latencies[latencies.len() / 2],
            latencies[latencies.len() - 1]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_that_was_down_during_a_revocation_refuses_the_token_after_it_restarts() {
    let mut fleet = Fleet::start(3).await;
    let token = fleet.opaque("bob");
    assert_eq!(fleet.statuses(&token).await, [200, 200, 200]);
    let stopped = fleet.sidecars.pop().unwrap();
    stopped.shutdown().await;

    assert_eq!(evict(&fleet.sidecars[0], &token, None).await.0, 200);
    let restarted = fleet.sidecar().await;
    // Joined means the durable set is loaded: no polling needed.
    assert_eq!(
        status_at(&restarted, &token).await,
        401,
        "the restarted sidecar caught up"
    );
    fleet.sidecars.push(restarted);
    assert_eq!(fleet.statuses(&token).await, [401, 401, 401]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caep_session_revoked_event_refuses_every_token_of_the_subject_fleet_wide() {
    let fleet = Fleet::start(3).await;
    let bob = [fleet.jwt("bob"), fleet.jwt("bob"), fleet.opaque("bob")];
    let carol = fleet.jwt("carol");
    for token in bob.iter().chain([&carol]) {
        assert_eq!(fleet.statuses(token).await, [200, 200, 200]);
    }
    let event = SecurityEvent::session_revoked(fleet.issuer.issuer(), "bob", RECEIVER);
    let (_, status, body) = fleet.issuer.transmit(&fleet.receiver(1), &event).await.unwrap();
    assert_eq!(status, 202, "{body}");
    for token in &bob {
        let took = fleet.refused_everywhere_within(token, Duration::from_secs(1)).await;
        assert!(took.is_some(), "every token of bob is refused by every sidecar");
    }
    assert_eq!(
        fleet.statuses(&carol).await,
        [200, 200, 200],
        "another subject is untouched"
    );
    let metrics = scrape_metrics(fleet.sidecars[1].admin_addr).await;
    assert!(
        metrics.contains("scopegate_ssf_events_total{result=\"applied\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_and_replayed_events_are_refused() {
    let fleet = Fleet::start(3).await;
    let erin = fleet.jwt("erin");
    let issuer = fleet.issuer.issuer().to_string();
    let receiver = fleet.receiver(0);
    let event = SecurityEvent::session_revoked(&issuer, "erin", RECEIVER);
    let impostor = dev_issuer(DevIssuerConfig::default()).await;

    let forged = [
        (
            "signed with another key",
            event.sign(&issuer, &impostor.current_key()),
            "invalid_key",
        ),
        (
            "for another receiver",
            SecurityEvent {
                audience: "https://elsewhere.test".into(),
                ..event.clone()
            }
            .sign(&issuer, &fleet.issuer.current_key()),
            "invalid_audience",
        ),
        (
            "from another issuer",
            SecurityEvent {
                issuer: Some("https://evil.test".into()),
                ..event.clone()
            }
            .sign(&issuer, &fleet.issuer.current_key()),
            "invalid_issuer",
        ),
        (
            "too old",
            SecurityEvent {
                age: Duration::from_secs(3600),
                ..event.clone()
            }
            .sign(&issuer, &fleet.issuer.current_key()),
            "invalid_request",
        ),
    ];
    for (what, set, code) in &forged {
        let (status, body) = scopegate::dev::push(&receiver, set).await.unwrap();
        assert_eq!(status, 400, "{what}: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["err"], *code, "{what}: {body}");
    }
    assert_eq!(
        fleet.statuses(&erin).await,
        [200, 200, 200],
        "no forged event was applied"
    );

    // A genuine event about someone else, then the very same SET again.
    let dave = fleet.jwt("dave");
    let (set, status, _) = fleet
        .issuer
        .transmit(&receiver, &SecurityEvent::session_revoked(&issuer, "dave", RECEIVER))
        .await
        .unwrap();
    assert_eq!(status, 202);
    assert!(
        fleet
            .refused_everywhere_within(&dave, Duration::from_secs(1))
            .await
            .is_some()
    );
    let (status, body) = scopegate::dev::push(&receiver, &set).await.unwrap();
    assert_eq!(status, 400, "a replay is refused: {body}");
    assert!(body.contains("replay"), "{body}");
    // Replayed to another sidecar, which never saw it: the fleet remembers the jti.
    let (status, body) = scopegate::dev::push(&fleet.receiver(2), &set).await.unwrap();
    assert_eq!(status, 400, "a replay to another sidecar is refused: {body}");
    assert!(body.contains("replay"), "{body}");

    // Not a SET at all.
    let response = client()
        .post(&receiver)
        .header("content-type", "application/json")
        .body(set)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(fleet.statuses(&erin).await, [200, 200, 200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_loses_no_revocation_and_turns_no_cached_token_into_a_5xx() {
    let mut fleet = Fleet::start(3).await;
    let revoked_before = fleet.jwt("frank");
    let cached_opaque = fleet.opaque("grace");
    let cached_jwt = fleet.jwt("heidi");
    let revoked_during = fleet.jwt("ivan");
    for token in [&revoked_before, &cached_opaque, &cached_jwt, &revoked_during] {
        assert_eq!(fleet.statuses(token).await, [200, 200, 200]);
    }
    assert_eq!(evict(&fleet.sidecars[0], &revoked_before, None).await.0, 200);
    assert!(
        fleet
            .refused_everywhere_within(&revoked_before, Duration::from_secs(1))
            .await
            .is_some()
    );

    fleet.redis.stop();
    // Traffic while Redis is down: the known revocation holds, cached tokens pass, no 5xx.
    let deadline = Instant::now() + Duration::from_secs(15);
    while fleet.sidecars.iter().any(connected) {
        assert!(Instant::now() < deadline, "the sidecars notice that Redis is gone");
        assert_eq!(fleet.statuses(&revoked_before).await, [401, 401, 401]);
        assert_eq!(fleet.statuses(&cached_opaque).await, [200, 200, 200]);
        assert_eq!(fleet.statuses(&cached_jwt).await, [200, 200, 200]);
    }
    // A revocation accepted during the outage: in force here at once, sent when Redis is back.
    let (status, body) = evict(&fleet.sidecars[1], &revoked_during, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["fleet"], "pending", "{body}");
    assert_eq!(status_at(&fleet.sidecars[1], &revoked_during).await, 401);

    // Redis comes back empty (no persistence): the sidecars refill it.
    fleet.redis.restart();
    eventually("every sidecar reconnects", || fleet.sidecars.iter().all(connected)).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let statuses = fleet.statuses(&revoked_during).await;
        if statuses == [401, 401, 401] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the revocation accepted during the outage reaches everyone: {statuses:?}"
        );
        assert_eq!(fleet.statuses(&cached_opaque).await, [200, 200, 200]);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for token in [&revoked_before, &revoked_during] {
        assert_eq!(fleet.statuses(token).await, [401, 401, 401]);
    }
    // A sidecar started now learns both from the refilled Redis.
    let newcomer = fleet.sidecar().await;
    assert_eq!(status_at(&newcomer, &revoked_before).await, 401);
    assert_eq!(status_at(&newcomer, &revoked_during).await, 401);
    assert_eq!(status_at(&newcomer, &cached_jwt).await, 200);
    let metrics = scrape_metrics(fleet.sidecars[0].admin_addr).await;
    assert!(metrics.contains("scopegate_fleet_connected 1"), "{metrics}");
    assert!(
        !metrics.contains("scopegate_fleet_errors_total{op=\"subscribe\"} 0"),
        "the outage was counted"
    );
    // The fleet's families as docs/metrics.md documents them (its catalog test runs without a fleet).
    for family in [
        "scopegate_fleet_connected gauge",
        "scopegate_fleet_errors_total counter",
        "scopegate_fleet_revocations_total counter",
        "scopegate_fleet_shared_cache_lookups_total counter",
        "scopegate_ssf_events_total counter",
    ] {
        assert!(metrics.contains(&format!("# TYPE {family}")), "{family}:\n{metrics}");
    }
    for source in ["admin", "fleet"] {
        let unmoved = format!("scopegate_fleet_revocations_total{{source=\"{source}\"}} 0\n");
        assert!(!metrics.contains(&unmoved), "{source}:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sidecars_make_one_introspection_call_per_token() {
    let fleet = Fleet::start(3).await;
    let redis = redis::Client::open(fleet.redis.url()).unwrap();
    let mut connection = redis.get_multiplexed_async_connection().await.unwrap();
    let before = fleet.issuer.count(Endpoint::Introspect);
    let tokens: Vec<String> = (0..5).map(|i| fleet.opaque(&format!("user-{i}"))).collect();
    for token in &tokens {
        assert_eq!(status_at(&fleet.sidecars[0], token).await, 200);
        // Shared in the background: wait until it is stored, by the token's digest.
        let digest: String = scopegate::token::token_digest(token)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let key = format!("fleet-test:introspection:{digest}");
        eventually_some("the answer is shared", || {
            let mut connection = connection.clone();
            let key = key.clone();
            async move {
                let exists: bool = redis::cmd("EXISTS")
                    .arg(&key)
                    .query_async(&mut connection)
                    .await
                    .unwrap();
                exists.then_some(())
            }
        })
        .await;
        assert_eq!(status_at(&fleet.sidecars[1], token).await, 200);
        assert_eq!(status_at(&fleet.sidecars[2], token).await, 200);
    }
    assert_eq!(
        fleet.issuer.count(Endpoint::Introspect) - before,
        5,
        "one introspection call per token for three sidecars"
    );
    // Never the token itself in Redis.
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut connection).await.unwrap();
    assert!(
        tokens.iter().all(|t| keys.iter().all(|k| !k.contains(t.as_str()))),
        "{keys:?}"
    );
    // A revocation still beats a shared answer.
    assert_eq!(evict(&fleet.sidecars[2], &tokens[0], None).await.0, 200);
    assert!(
        fleet
            .refused_everywhere_within(&tokens[0], Duration::from_secs(1))
            .await
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_share_revocations_over_tls_with_a_password() {
    let fleet = Fleet::start_on(RedisServer::start_tls("fleet-test-redis-password"), 2).await;
    let token = fleet.jwt("oscar");
    assert_eq!(fleet.statuses(&token).await, [200, 200]);
    let (status, body) = evict(&fleet.sidecars[1], &token, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["fleet"], "published", "{body}");
    assert!(
        fleet
            .refused_everywhere_within(&token, Duration::from_secs(1))
            .await
            .is_some()
    );

    // Without the test CA (the web PKI roots) the server is not trusted: no connection.
    let text = CONFIG
        .replace("{token_file}", fleet.token_file.to_str().unwrap())
        .replace("{client_id}", &fleet.client.client_id)
        .replace("{secret_file}", fleet.client.secret_file.to_str().unwrap())
        .replace("{jwks}", &fleet.issuer.jwks_uri());
    // The same settings but the CA file: the password alone does not make the server trusted.
    let section: String = fleet
        .fleet_section()
        .lines()
        .filter(|line| !line.starts_with("ca_file"))
        .collect::<Vec<_>>()
        .join("\n");
    let untrusting = text.replace("{fleet}", &section);
    let sidecar = start_ready_proxy(config(&untrusting, &fleet.upstream.url(), fleet.issuer.issuer())).await;
    eventually("the untrusted server is refused", || {
        sidecar.app.metrics.fleet_errors.with_label_values(&["subscribe"]).get() > 0
    })
    .await;
    assert!(!connected(&sidecar));
    assert_eq!(status_at(&sidecar, &token).await, 200, "it never learnt the revocation");
}

/// `POST /revocations` on one sidecar, as status and JSON body.
async fn revoke_holder(sidecar: &Running, form: &str, bearer: &str) -> (u16, serde_json::Value) {
    let response = client()
        .post(format!("http://{}/revocations", sidecar.admin_addr))
        .bearer_auth(bearer)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_revocation_refuses_tokens_issued_before_it_and_those_without_iat() {
    let fleet = Fleet::start(3).await;
    let cutoff = now() - 60;
    let older = fleet.jwt_issued("judy", Some(cutoff - 60));
    let at_cutoff = fleet.jwt_issued("judy", Some(cutoff));
    let undated = fleet.jwt_issued("judy", None);
    let newer = fleet.jwt_issued("judy", Some(cutoff + 30));
    let other_client = fleet.jwt_issued("mallory", Some(cutoff - 60));
    for token in [&older, &at_cutoff, &undated, &newer, &other_client] {
        assert_eq!(fleet.statuses(token).await, [200, 200, 200]);
    }
    let form = format!("subject=judy&iss={}&issued_before={cutoff}", fleet.issuer.issuer());
    let form = form.replace(':', "%3A").replace('/', "%2F");
    assert_eq!(
        revoke_holder(&fleet.sidecars[2], &form, "not-the-admin-token").await.0,
        401
    );
    assert_eq!(
        fleet.statuses(&older).await,
        [200, 200, 200],
        "a refused request revoked nothing"
    );
    let (status, body) = revoke_holder(&fleet.sidecars[2], &form, ADMIN_TOKEN).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["fleet"], "published", "{body}");
    assert_eq!(body["issued_before"], cutoff, "{body}");
    for token in [&older, &at_cutoff, &undated] {
        assert!(
            fleet
                .refused_everywhere_within(token, Duration::from_secs(1))
                .await
                .is_some()
        );
    }
    assert_eq!(
        fleet.statuses(&newer).await,
        [200, 200, 200],
        "issued after the cut-off"
    );
    assert_eq!(fleet.statuses(&other_client).await, [200, 200, 200], "another subject");
    for bad in [
        "subject=judy&client_id=x",
        "issued_before=1",
        "subject=",
        "subject=judy&subject=judy",
    ] {
        assert_eq!(
            revoke_holder(&fleet.sidecars[0], bad, ADMIN_TOKEN).await.0,
            400,
            "{bad}"
        );
    }
    let future = format!("subject=judy&issued_before={}", now() + 3600);
    assert_eq!(revoke_holder(&fleet.sidecars[0], &future, ADMIN_TOKEN).await.0, 400);
}

#[test]
fn a_fleet_needs_an_admin_token_and_no_inline_password() {
    let base = "[listener]\naddress = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://127.0.0.1:1\"\n";
    let problems = |text: &str| match scopegate::config::Config::from_toml(text, "test.toml") {
        Ok(_) => String::new(),
        Err(error) => error.to_string(),
    };
    let no_token = problems(&format!("{base}[fleet]\nurl = \"redis://127.0.0.1:6379\"\n"));
    assert!(no_token.contains("admin.token_file"), "{no_token}");
    let inline = problems(&format!("{base}[fleet]\nurl = \"redis://:secret@127.0.0.1:6379\"\n"));
    assert!(inline.contains("must not contain a password"), "{inline}");
    assert!(!inline.contains("secret@"), "the password is not repeated: {inline}");
    let scheme = problems(&format!("{base}[fleet]\nurl = \"http://127.0.0.1:6379\"\n"));
    assert!(scheme.contains("redis://"), "{scheme}");
    let plain_ca = problems(&format!(
        "{base}[fleet]\nurl = \"redis://127.0.0.1:6379\"\nca_file = \"/nonexistent.pem\"\n"
    ));
    assert!(plain_ca.contains("only applies to a rediss://"), "{plain_ca}");
    assert!(plain_ca.contains("cannot read"), "{plain_ca}");
    let both = problems(&format!(
        "{base}[admin]\ntoken_file = \"/nonexistent\"\ntoken_env = \"X\"\n"
    ));
    assert!(
        both.contains("set at most one of admin.token_file or admin.token_env"),
        "{both}"
    );
    let short = std::env::temp_dir().join(format!("scopegate-short-admin-token-{}", std::process::id()));
    std::fs::write(&short, "short").unwrap();
    let weak = problems(&format!("{base}[admin]\ntoken_file = {:?}\n", short.to_str().unwrap()));
    let _ = std::fs::remove_file(&short);
    assert!(weak.contains("at least 16 bytes"), "{weak}");
}

#[test]
fn the_documented_fleet_and_ssf_sections_compile() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml")).unwrap();
    let (start, end) = (text.find("# [fleet]").unwrap(), text.find("# Forward-auth").unwrap());
    // Uncommented: the section headers and their keys, but not the files that exist only
    // in a real deployment.
    let sections: String = text[start..end]
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if rest.starts_with("password_") || rest.starts_with("ca_file") => line,
            Some(rest) if rest.starts_with('[') => rest,
            Some(rest) if rest.contains(" = ") && rest.starts_with(|c: char| c.is_ascii_lowercase()) => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let token_file = std::env::temp_dir().join(format!("scopegate-example-admin-token-{}", std::process::id()));
    std::fs::write(&token_file, ADMIN_TOKEN).unwrap();
    let before = text[..start].replace(
        "# token_file = \"/run/secrets/scopegate-admin-token\"",
        &format!("token_file = {:?}", token_file.to_str().unwrap()),
    );
    let compiled = scopegate::config::Config::from_toml(&format!("{before}{sections}\n{}", &text[end..]), "example");
    let _ = std::fs::remove_file(&token_file);
    let config = compiled.unwrap_or_else(|e| panic!("{e}"));
    let fleet = config.fleet.unwrap();
    assert_eq!(fleet.key_prefix, "scopegate:");
    assert!(fleet.share_introspection);
    assert_eq!(config.ssf.unwrap().max_age, Duration::from_secs(300));
}
