#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;
use crate::canonical::canonicalize_path;
use crate::config::{Config, ConfigError};

fn rules_of(route: &str) -> Result<Vec<ClaimRule>, Vec<String>> {
    let text = format!(
        "[listener]\naddress = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://127.0.0.1:1\"\n\
         [[issuer]]\nurl = \"https://as.example\"\naudiences = [\"api\"]\n{route}"
    );
    match Config::from_toml(&text, "t.toml") {
        Ok(config) => Ok(config.routes.iter().flat_map(|r| r.claim_rules.clone()).collect()),
        Err(ConfigError::Invalid(issues)) => Err(issues.iter().map(ToString::to_string).collect()),
        Err(e) => panic!("{e}"),
    }
}

fn claims(value: serde_json::Value) -> serde_json::Map<String, Value> {
    value.as_object().cloned().unwrap()
}

fn first_broken<'r>(
    rules: &'r [ClaimRule],
    claims: &serde_json::Map<String, Value>,
    path: &CanonicalPath,
) -> Option<&'r ClaimRule> {
    super::first_broken(rules, |name| claims.get(name), path)
}

fn path(p: &str) -> CanonicalPath {
    canonicalize_path(p, Default::default()).unwrap()
}

#[test]
fn every_problem_is_reported_at_once_with_its_key() {
    let issues = rules_of(
        "[[route]]\nname = \"r\"\npath = \"/orgs/{org}/**\"\n\
         [[route.claim]]\nclaim = \"org_id\"\nequals_param = \"tenant\"\n\
         [[route.claim]]\nclaim = \"\"\nequals = \"x\"\n\
         [[route.claim]]\nclaim = \"a\"\n\
         [[route.claim]]\nclaim = \"b\"\nequals = 1\ncontains = 2\n\
         [[route.claim]]\nclaim = \"c\"\nequals = 1.5\n\
         [[route.claim]]\nclaim = \"d\"\ncontains = [\"x\"]\n\
         [[route.claim]]\nclaim = \"e\"\none_of = []\n\
         [[route.claim]]\nclaim = \"f\"\none_of = [\"ok\", { x = 1 }]\n\
         [[route]]\nname = \"p\"\npath = \"/p\"\npublic = true\n\
         [[route.claim]]\nclaim = \"g\"\nequals = true\n",
    )
    .unwrap_err();
    let expect = [
        "route[0].claim[0].equals_param",
        "\"tenant\" is not a parameter of this route's path \"/orgs/{org}/**\"; its parameters are {org}",
        "route[0].claim[1].claim",
        "route[0].claim[2] ",
        "tests nothing",
        "route[0].claim[3] ",
        "sets equals and contains",
        "route[0].claim[4].equals",
        "a float is never compared exactly",
        "route[0].claim[5].contains",
        "not array",
        "route[0].claim[6].one_of",
        "route[0].claim[7].one_of[1]",
        "route[1].public",
    ];
    let all = issues.join("\n");
    for needle in expect {
        assert!(all.contains(needle), "{needle:?} missing from:\n{all}");
    }
    assert_eq!(issues.len(), 9, "{all}");
}

#[test]
fn literals_are_compared_with_their_type() {
    let rules = rules_of(
        "[[route]]\nname = \"r\"\npath = \"/r\"\n\
         [[route.claim]]\nclaim = \"email_verified\"\nequals = true\n\
         [[route.claim]]\nclaim = \"tier\"\nequals = 2\n\
         [[route.claim]]\nclaim = \"region\"\nequals = \"eu\"\n",
    )
    .unwrap();
    let at = path("/r");
    let good = claims(json!({"email_verified": true, "tier": 2, "region": "eu"}));
    assert_eq!(first_broken(&rules, &good, &at), None);
    for (name, bad) in [
        ("email_verified", json!("true")),
        ("tier", json!("2")),
        ("tier", json!(2.0)),
        ("region", json!("EU")),
        ("region", json!("eu ")),
        ("region", json!(["eu"])),
    ] {
        let mut c = good.clone();
        c.insert(name.into(), bad.clone());
        assert!(first_broken(&rules, &c, &at).is_some(), "{name} = {bad}");
    }
    let mut missing = good.clone();
    missing.remove("tier");
    assert_eq!(
        first_broken(&rules, &missing, &at).map(ToString::to_string).as_deref(),
        Some("tier = 2")
    );
}

#[test]
fn contains_and_one_of() {
    let rules = rules_of(
        "[[route]]\nname = \"r\"\npath = \"/r\"\n\
         [[route.claim]]\nclaim = \"groups\"\ncontains = \"billing\"\n\
         [[route.claim]]\nclaim = \"acr\"\none_of = [\"silver\", \"gold\"]\n",
    )
    .unwrap();
    let at = path("/r");
    let ok = |c: serde_json::Value| first_broken(&rules, &claims(c), &at).is_none();
    assert!(ok(json!({"groups": ["x", "billing"], "acr": "gold"})));
    assert!(
        ok(json!({"groups": "billing", "acr": "silver"})),
        "a single value is a list of one"
    );
    assert!(
        !ok(json!({"groups": "x billing", "acr": "gold"})),
        "strings are never split"
    );
    assert!(!ok(json!({"groups": ["Billing"], "acr": "gold"})));
    assert!(!ok(json!({"groups": ["billing"], "acr": "bronze"})));
    assert!(!ok(json!({"groups": ["billing"], "acr": ["gold"]})));
}

#[test]
fn path_parameters_are_compared_decoded() {
    let rules = rules_of(
        "[[route]]\nname = \"r\"\npath = \"/orgs/{org}/**\"\n\
         [[route.claim]]\nclaim = \"org_id\"\nequals_param = \"org\"\n",
    )
    .unwrap();
    assert_eq!(rules[0].to_string(), "org_id = {org}");
    let holds =
        |p: &str, org: serde_json::Value| first_broken(&rules, &claims(json!({ "org_id": org })), &path(p)).is_none();
    assert!(holds("/orgs/acme/x", json!("acme")));
    assert!(holds("/orgs/%C3%A9t%C3%A9/x", json!("été")));
    assert!(holds("/orgs/a%20b", json!("a b")));
    assert!(
        holds("/orgs/%61cme", json!("acme")),
        "unreserved escapes are decoded by canonicalization"
    );
    assert!(!holds("/orgs/acme/x", json!("Acme")));
    assert!(!holds("/orgs/%C3%A9t%C3%A9/x", json!("%C3%A9t%C3%A9")));
    assert!(!holds("/orgs/42", json!(42)), "a number is not the text of a path");
}
