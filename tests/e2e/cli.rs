//! The `scopegate` binary's `check` command.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn scopegate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_scopegate"))
}

#[test]
fn check_accepts_the_example_and_prints_the_route_table() {
    let out = scopegate()
        .args([
            "check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml"),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("precedence"), "{stdout}");
    assert!(stdout.contains("projects-read"), "{stdout}");
    // The documented [[resource]] and its metadata URL.
    assert!(
        stdout.contains("https://api.example.com  metadata https://api.example.com/.well-known/oauth-protected-resource  routes: org-projects, events, projects-read, projects-write, admin"),
        "{stdout}"
    );
    // Each route's claim rules under it; routes that let preflights through say so.
    assert!(stdout.contains("claim: org_id = {org}"), "{stdout}");
    assert!(stdout.contains("claim: email_verified = true"), "{stdout}");
    assert!(stdout.contains("(CORS preflights pass without a token)"), "{stdout}");
}

#[test]
fn check_lists_claim_rule_and_cors_mistakes_with_their_lines() {
    let stderr = check_failing(
        "claims",
        r#"
[listener]
address = "127.0.0.1:8080"
[upstream]
url = "http://127.0.0.1:3000"
[cors]
allowed_origins = ["https://app.example/"]
[[issuer]]
url = "https://auth.example.com"
audiences = ["api"]
[[route]]
name = "org"
path = "/orgs/{org}"
[[route.claim]]
claim = "org_id"
equals_param = "tenant"
[[route.claim]]
claim = "verified"
equals = "yes"
contains = "no"
"#,
    );
    assert!(stderr.contains("3 problem(s)"), "{stderr}");
    assert!(
        stderr.contains(
            r#"cors.allowed_origins[0] (line 7): "https://app.example/" is not spelled as browsers send Origin"#
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(r#"route[0].claim[0].equals_param (line 16): "tenant" is not a parameter"#),
        "{stderr}"
    );
    assert!(
        stderr.contains("route[0].claim[1] (line 17): sets equals and contains"),
        "{stderr}"
    );
}

/// Runs `scopegate check` on `text`, which must fail; returns what it printed to stderr.
fn check_failing(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("scopegate-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let out = scopegate().args(["check", "--config"]).arg(&path).output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{stderr}");
    stderr
}

#[test]
fn check_lists_every_mistake() {
    let stderr = check_failing(
        "every",
        r#"
[listener]
address = "127.0.0.1:8080"
idle_timeout = "forever"
[upstream]
url = "ftp://127.0.0.1:3000"
[[issuer]]
url = "https://auth.example.com"
audiences = ["api"]
[[route]]
name = "r"
path = "/a"
scopes = ["read data"]
"#,
    );
    assert!(stderr.contains("3 problem(s)"), "{stderr}");
    assert!(stderr.contains("listener.idle_timeout"), "{stderr}");
    assert!(stderr.contains("upstream.url"), "{stderr}");
    assert!(stderr.contains("route[0].scopes[0]"), "{stderr}");
}

#[test]
fn check_lists_file_mistakes_with_their_lines_next_to_the_rest() {
    // No [upstream]; a wrong type, an unknown enum value and an unknown key, each of which
    // serde alone would report on its own; and two problems found when compiling.
    let stderr = check_failing(
        "lines",
        r#"[listener]
address = "127.0.0.1:8080"
max_connections = "many"
idle_timeout = "forever"

[auth]
mode = "audit"

[forwarding]
add_via_header = true

[[issuer]]
url = "http://auth.example.com"
audiences = ["api"]

[[route]]
name = "r"
path = "/a"
scopes = ["read data"]
"#,
    );
    assert!(stderr.contains("6 problem(s)"), "{stderr}");
    for expected in [
        "upstream: is missing: add a [upstream] table",
        "listener.max_connections (line 3): invalid type: string \"many\"",
        "auth.mode (line 7): unknown variant `audit`, expected `enforce` or `dry_run`",
        "forwarding.add_via_header (line 10): unknown field `add_via_header`, expected one of",
        "issuer[0].url (line 13): must be an https URL",
        "route[0].scopes[0] (line 19): \"read data\" contains a space",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
    // Only sections that could be read are compiled: [listener]'s idle timeout is judged
    // once max_connections is fixed, not against a stand-in.
    assert!(!stderr.contains("listener.idle_timeout"), "{stderr}");
}

#[test]
fn missing_config_is_a_clear_error() {
    let out = scopegate()
        .arg("check")
        .env_remove("SCOPEGATE_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
}

/// Runs `scopegate check` on a recipe from the README, with a listener and an upstream added
/// where it has none; returns what it printed to stdout.
fn check_recipe(name: &str) -> String {
    let recipe = std::fs::read_to_string(format!("{}/tests/recipes/{name}.toml", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let dir = std::env::temp_dir().join(format!("scopegate-cli-recipe-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("recipe.toml");
    let head = "[listener]\naddress = \"127.0.0.1:8080\"\n[upstream]\nurl = \"http://127.0.0.1:3000\"\n";
    let head = if recipe.contains("[listener]") { "" } else { head };
    std::fs::write(&path, format!("{head}{recipe}")).unwrap();
    let out = scopegate().args(["check", "--config"]).arg(&path).output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn check_notes_issuers_whose_id_tokens_only_the_audience_keeps_out() {
    let keycloak = check_recipe("keycloak");
    assert!(
        keycloak.contains("note: accepts typ at+jwt, JWT") && keycloak.contains("never a client id"),
        "{keycloak}"
    );
    assert!(check_recipe("okta").contains("note: accepts any typ"));
    let minimal = check_recipe("minimal");
    assert!(!minimal.contains("note:"), "at+jwt only: {minimal}");
}

#[test]
fn check_shows_the_forward_auth_endpoint() {
    let dir = std::env::temp_dir().join(format!("scopegate-cli-forward-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("forward-auth.toml");
    std::fs::write(
        &path,
        r#"
[listener]
address = "127.0.0.1:8080"
[upstream]
url = "http://127.0.0.1:3000"
[[route]]
name = "p"
path = "/**"
public = true
[forward_auth]
listen = "127.0.0.1:9191"
ingress = "envoy"
trusted_peers = ["10.0.0.0/8", "::1"]
path_prefix = "/ext_authz/"
"#,
    )
    .unwrap();
    let out = scopegate().args(["check", "--config"]).arg(&path).output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains(
            "forward-auth 127.0.0.1:9191  ingress envoy  trusted peers 10.0.0.0/8, ::1/128  path prefix /ext_authz"
        ),
        "{stdout}"
    );
}
