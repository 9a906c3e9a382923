#![allow(clippy::unwrap_used)]
use super::*;
use crate::config::{Config, ConfigError, ConfigIssue};

fn problems(text: &str) -> Vec<ConfigIssue> {
    match Config::from_toml(text, "t.toml") {
        Err(ConfigError::Invalid(issues)) => issues,
        other => panic!("expected problems, got {other:?}"),
    }
}

fn find<'a>(issues: &'a [ConfigIssue], path: &str) -> &'a ConfigIssue {
    issues
        .iter()
        .find(|i| i.path == path)
        .unwrap_or_else(|| panic!("no problem at {path} in {issues:#?}"))
}

#[test]
fn every_kind_of_problem_is_reported_at_once_with_its_line() {
    let text = r#"[listener]
address = "127.0.0.1:0"
header_read_timeout = 10

[auth]
mode = "audit"

[identity]
prefix = "x-auth-"
clams = {}

[reload]
interval = "10ms"

[[issuer]]
url = "http://as.example"
audiences = ["api"]
"#;
    let issues = problems(text);
    let upstream = find(&issues, "upstream");
    assert_eq!(upstream.line, None);
    assert!(upstream.message.contains("add a [upstream] table"), "{upstream}");
    let wrong_type = find(&issues, "listener.header_read_timeout");
    assert_eq!(wrong_type.line, Some(3));
    assert!(wrong_type.message.contains("expected a string"), "{wrong_type}");
    let enum_value = find(&issues, "auth.mode");
    assert_eq!(enum_value.line, Some(6));
    assert!(enum_value.message.contains("`enforce` or `dry_run`"), "{enum_value}");
    let unknown = find(&issues, "identity.clams");
    assert_eq!(unknown.line, Some(10));
    assert!(unknown.message.contains("`claims`"), "{unknown}");
    // Compile-time problems of the sections that could be read, also with their lines.
    assert_eq!(find(&issues, "reload.interval").line, Some(13));
    assert_eq!(find(&issues, "issuer[0].url").line, Some(16));
    assert_eq!(issues.len(), 6, "{issues:#?}");
    assert_eq!(
        find(&issues, "auth.mode").to_string(),
        "auth.mode (line 6): unknown variant `audit`, expected `enforce` or `dry_run`"
    );
}

#[test]
fn problems_in_every_route_and_nested_table_are_reported() {
    let text = r#"[listener]
address = "127.0.0.1:0"
[upstream]
url = "http://127.0.0.1:1"
[[route]]
name = "a"
path = "/a"
methods = "GET"
[[route]]
path = "/b"
mode = "bogus"
[[route.mcp_rule]]
method = 4
[[route.mcp_rule]]
method = "tools/call"
scopes = "write"
[[issuer]]
url = "https://as.example"
audiences = ["api"]
token_validation = "introspection"
[issuer.introspection]
client_secret_env = "X"
"#;
    let issues = problems(text);
    assert_eq!(find(&issues, "route[0].methods").line, Some(8));
    assert_eq!(find(&issues, "route[1].mode").line, Some(11));
    assert_eq!(find(&issues, "route[1].mcp_rule[0].method").line, Some(13));
    assert_eq!(find(&issues, "route[1].mcp_rule[1].scopes").line, Some(16));
    let name = find(&issues, "route[1].name");
    assert_eq!(name.line, Some(9));
    assert!(name.message.contains("add `name = …` to [[route]]"), "{name}");
    let client_id = find(&issues, "issuer[0].introspection.client_id");
    assert_eq!(client_id.line, Some(21));
    assert!(client_id.message.contains("[issuer.introspection]"), "{client_id}");
    assert_eq!(issues.len(), 6, "{issues:#?}");
}

#[test]
fn a_bad_required_value_is_reported_once() {
    let text = "[listener]\naddress = 8080\n[upstream]\nurl = \"http://127.0.0.1:1\"\n";
    let issues = problems(text);
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert_eq!(issues[0].path, "listener.address");
    assert_eq!(issues[0].line, Some(2));
}

#[test]
fn unknown_sections_and_misshapen_ones_are_named() {
    let text = "route = 1\n[listener]\naddress = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://127.0.0.1:1\"\n[[auth]]\n[rout]\n";
    let issues = problems(text);
    assert!(find(&issues, "route").message.contains("[[route]]"));
    assert_eq!(find(&issues, "auth").line, Some(6));
    assert_eq!(find(&issues, "rout").line, Some(7));
}

#[test]
fn invalid_toml_is_one_error_with_line_and_column() {
    let err = Config::from_toml("[listener]\naddress = \"127.0.0.1:0\n", "t.toml").unwrap_err();
    let ConfigError::Syntax { path, message } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(path, "t.toml");
    assert!(message.contains("line 2"), "{message}");
}

#[test]
fn paths_find_their_lines() {
    let text = "[a]\nb = [1,\n  2]\n[[c]]\nd = 1\n[[c]]\nd = 2\n";
    let document = Document::parse(text, "t").unwrap();
    assert_eq!(document.line_of("a.b[1]"), Some(3));
    assert_eq!(document.line_of("c[1].d"), Some(7));
    assert_eq!(document.line_of("c[1].missing"), Some(6));
    assert_eq!(document.line_of("nowhere"), None);
    assert_eq!(describe_table("issuer[1].introspection"), "[issuer.introspection]");
    assert_eq!(describe_table("route[2].mcp_rule[0]"), "[[route.mcp_rule]]");
}
