#![allow(clippy::unwrap_used)]
use crate::config::{Config, ConfigError};

const BASE: &str = r#"
[listener]
address = "127.0.0.1:0"
[upstream]
url = "http://127.0.0.1:3000"
[[issuer]]
url = "https://auth.example.com"
audiences = ["https://mcp.example.com/mcp"]
"#;

fn compile(extra: &str) -> Result<Config, Vec<String>> {
    match Config::from_toml(&format!("{BASE}{extra}"), "t.toml") {
        Ok(c) => Ok(c),
        // By path and message: these tests are about where problems are found, not lines.
        Err(ConfigError::Invalid(issues)) => Err(issues.iter().map(|i| format!("{}: {}", i.path, i.message)).collect()),
        Err(e) => Err(vec![e.to_string()]),
    }
}

#[test]
fn compiles_documents_and_routes() {
    let c = compile(
        r#"
[mcp]
resource = "https://mcp.example.com/mcp"
resource_name = "Notes"
[[route]]
name = "mcp"
path = "/mcp"
mcp = true
scopes = ["mcp"]
[[route.mcp_rule]]
method = "tools/call"
name = "delete_*"
scopes = ["write"]
"#,
    )
    .unwrap();
    let doc = c.mcp.document_at("/.well-known/oauth-protected-resource/mcp").unwrap();
    assert_eq!(
        doc.metadata_url,
        "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
    );
    assert_eq!(
        c.mcp
            .document_at("/.well-known/oauth-protected-resource")
            .unwrap()
            .resource,
        "https://mcp.example.com/mcp"
    );
    let json: serde_json::Value = serde_json::from_slice(&doc.body).unwrap();
    assert_eq!(json["scopes_supported"], serde_json::json!(["mcp", "write"]));
    assert_eq!(
        json["authorization_servers"],
        serde_json::json!(["https://auth.example.com"])
    );
    assert_eq!(c.mcp.route("mcp").unwrap().rules.len(), 1);
}

#[test]
fn problems_are_reported_with_paths() {
    let errors = compile(
        r#"
[mcp]
resource = "http://mcp.example.com/mcp#frag"
resource_name = ""
authorization_servers = ["https://auth.example.com/"]
max_body_bytes = "1GiB"
[[route]]
name = "mcp"
path = "/mcp"
mcp = true
public = true
scopes = ["offline_access"]
[[route.mcp_rule]]
method = "tools/call"
scopes = []
[[route]]
name = "api"
path = "/api"
mcp_resource = "https://x.example"
"#,
    )
    .unwrap_err();
    let joined = errors.join("\n");
    for path in [
        "mcp.resource:",
        "mcp.resource_name:",
        "mcp.authorization_servers[0]:",
        "mcp.max_body_bytes:",
        "route[0].public:",
        "route[0].scopes:",
        "route[0].mcp_rule[0].scopes:",
        "route[1].mcp:",
    ] {
        assert!(joined.contains(path), "missing {path} in:\n{joined}");
    }
}

#[test]
fn issuer_audiences_must_name_the_resource_and_routes_need_the_table() {
    let errors = compile(
        r#"
[mcp]
resource = "https://other.example.com/mcp"
resource_name = "x"
[[route]]
name = "mcp"
path = "/mcp"
mcp = true
"#,
    )
    .unwrap_err();
    assert!(
        errors.iter().any(|e| e.starts_with("issuer[0].audiences:")),
        "{errors:?}"
    );
    let errors = compile("[[route]]\nname = \"mcp\"\npath = \"/mcp\"\nmcp = true\n").unwrap_err();
    assert!(errors.iter().any(|e| e.starts_with("route[0].mcp:")), "{errors:?}");
}

#[test]
fn resource_rule_names_are_written_in_normal_form() {
    let rules = |rules: &str| {
        format!(
            "[mcp]\nresource = \"https://mcp.example.com/mcp\"\nresource_name = \"x\"\n\
             [[route]]\nname = \"mcp\"\npath = \"/mcp\"\nmcp = true\n{rules}"
        )
    };
    let errors = compile(&rules(
        r#"[[route.mcp_rule]]
method = "resources/read"
name = "file://localhost/secret/*"
scopes = ["admin"]
[[route.mcp_rule]]
method = "resources/*"
name = "file:///public/../secret/*"
scopes = ["admin"]
[[route.mcp_rule]]
method = "tools/call"
name = "file://localhost/not-a-resource"
scopes = ["admin"]
[[route.mcp_rule]]
method = "*"
name = "delete_*"
scopes = ["admin"]
"#,
    ))
    .unwrap_err();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with("route[0].mcp_rule[0].name:"), "{errors:?}");
    assert!(errors[0].contains(r#"write it as "file:///secret/*""#), "{errors:?}");
    assert!(errors[1].starts_with("route[0].mcp_rule[1].name:"), "{errors:?}");
    assert!(errors[1].contains("no request can match it"), "{errors:?}");
}
