#![allow(clippy::unwrap_used)]
use super::*;
use http::HeaderValue;

fn scopes(names: &[&str]) -> BTreeSet<Scope> {
    names.iter().map(|n| Scope::parse(n).unwrap()).collect()
}

fn rule(method: &str, name: Option<&str>, needs: &[&str]) -> McpRule {
    McpRule {
        method: Glob::new(method),
        name: name.map(Glob::new),
        scopes: needs.iter().map(|n| Scope::parse(n).unwrap()).collect(),
    }
}

#[test]
fn duplicate_and_case_variant_members_are_refused() {
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_notes","Name":"delete_note"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","Method":"tools/call","params":{"name":"delete_note"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"delete_note"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","paramſ":{"name":"delete_note"},"params":{"name":"a"}}"#,
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"METHOD":"tools/call"}]"#,
    ] {
        assert_eq!(
            calls_in_body(body.as_bytes()),
            Err(InspectError::InvalidJsonRpc),
            "{body}"
        );
    }
    // Tool arguments are the tool's own data: any member names, as long as they are unique.
    let ok =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"Name":"x","name":"y"}}}"#;
    assert_eq!(calls_in_body(ok.as_bytes()).unwrap().len(), 1);
    let dup = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":1,"x":2}}}"#;
    assert!(calls_in_body(dup.as_bytes()).is_err());
}

#[test]
fn globs() {
    let g = Glob::new("delete_*");
    assert!(g.matches("delete_note"));
    assert!(g.matches("delete_"));
    assert!(!g.matches("undelete_note"));
    assert!(!g.matches("Delete_note"));
    assert!(Glob::new("*").matches(""));
    assert!(Glob::new("a*b*c").matches("aXXbYYc"));
    assert!(!Glob::new("a*b*c").matches("aXXbYY"));
    assert!(Glob::new("*_admin").matches("x_admin_admin"));
    assert!(Glob::new("tools/call").matches("tools/call"));
    assert!(!Glob::new("tools/call").matches("tools/calls"));
    assert!(Glob::new("resources/*").matches("resources/read"));
}

#[test]
fn body_calls_single_batch_and_responses() {
    let one = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{}}}"#;
    assert_eq!(
        calls_in_body(one).unwrap(),
        vec![Call {
            method: "tools/call".into(),
            name: Some("add".into())
        }]
    );
    let batch = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},
        {"jsonrpc":"2.0","method":"notifications/initialized"},
        {"jsonrpc":"2.0","id":7,"result":{}},
        {"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///x"}}]"#;
    let calls = calls_in_body(batch).unwrap();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[2].name.as_deref(), Some("file:///x"));
    for bad in [
        &b"[]"[..],
        b"not json",
        b"42",
        b"[[{\"method\":\"x\"}]]",
        b"{\"id\":1}",
        b"{\"method\":3}",
        b"{\"method\":\"tools/call\",\"params\":{}}",
    ] {
        assert_eq!(calls_in_body(bad), Err(InspectError::InvalidJsonRpc), "{bad:?}");
    }
}

#[test]
fn headers_must_agree_with_the_body() {
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_note"}}"#;
    let mut h = HeaderMap::new();
    h.insert(MCP_METHOD, HeaderValue::from_static("tools/call"));
    h.insert(MCP_NAME, HeaderValue::from_static("delete_note"));
    assert!(calls_in_request(&h, body).is_ok());
    h.insert(MCP_NAME, HeaderValue::from_static("=?base64?ZGVsZXRlX25vdGU=?="));
    assert!(calls_in_request(&h, body).is_ok(), "base64-encoded name");
    h.insert(MCP_NAME, HeaderValue::from_static("read_note"));
    assert_eq!(calls_in_request(&h, body), Err(InspectError::HeaderMismatch));
    h.remove(MCP_NAME);
    h.insert(MCP_METHOD, HeaderValue::from_static("tools/list"));
    assert_eq!(calls_in_request(&h, body), Err(InspectError::HeaderMismatch));
    h.insert(MCP_METHOD, HeaderValue::from_static("tools/call"));
    h.append(MCP_METHOD, HeaderValue::from_static("tools/call"));
    assert_eq!(calls_in_request(&h, body), Err(InspectError::HeaderMismatch));
    let batch = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}}]"#;
    let mut h = HeaderMap::new();
    h.insert(MCP_METHOD, HeaderValue::from_static("tools/call"));
    h.insert(MCP_NAME, HeaderValue::from_static("a"));
    assert!(calls_in_request(&h, batch).is_ok(), "a batch of one agrees");
}

#[test]
fn every_call_of_a_batch_must_be_allowed() {
    let rules = vec![
        rule("tools/call", Some("delete_*"), &["write"]),
        rule("tools/call", None, &["tools"]),
        rule("resources/*", None, &["read"]),
    ];
    let call = |m: &str, n: Option<&str>| Call {
        method: m.into(),
        name: n.map(String::from),
    };
    let granted = scopes(&["tools", "read"]);
    assert_eq!(
        evaluate(&rules, &[call("tools/call", Some("add"))], &granted),
        Verdict::Allowed
    );
    assert_eq!(
        evaluate(&rules, &[call("tools/list", None)], &scopes(&[])),
        Verdict::Allowed
    );
    let batch = [
        call("tools/call", Some("add")),
        call("tools/call", Some("delete_note")),
        call("resources/read", Some("x")),
    ];
    assert_eq!(
        evaluate(&rules, &batch, &granted),
        Verdict::Forbidden {
            needed: scopes(&["read", "tools", "write"])
        }
    );
    assert_eq!(
        evaluate(&rules, &batch, &scopes(&["tools", "read", "write"])),
        Verdict::Allowed
    );
}
