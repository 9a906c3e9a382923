#![allow(clippy::unwrap_used)]
use crate::config::{Config, ConfigError};

const BASE: &str = "[listener]\naddress = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://127.0.0.1:1\"\n";

#[test]
fn introspection_issuer_compiles_with_a_secret_file() {
    let dir = std::env::temp_dir().join(format!("scopegate-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let text = format!(
        "{BASE}[[issuer]]\nurl = \"https://as.example\"\naudiences = [\"api\"]\ntoken_validation = \"auto\"\n\
         [issuer.introspection]\nclient_id = \"sg\"\nclient_secret_file = \"{}\"\npositive_ttl = \"30s\"\n",
        secret.display()
    );
    let config = Config::from_toml(&text, "t").unwrap();
    let introspection = config.tokens.issuers[0].introspection.as_ref().unwrap();
    assert_eq!(introspection.client_secret.expose(), "s3cret");
    assert!(
        !format!("{introspection:?}").contains("s3cret"),
        "secrets never reach Debug output"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn introspection_mistakes_are_reported() {
    let text = format!(
        "{BASE}[[issuer]]\nurl = \"http://as.example\"\naudiences = [\"api\"]\ntoken_validation = \"introspection\"\n"
    );
    let Err(ConfigError::Invalid(issues)) = Config::from_toml(&text, "t") else {
        panic!()
    };
    let text: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
    assert!(text.iter().any(|i| i.starts_with("issuer[0].url")), "{text:?}");
    assert!(
        text.iter().any(|i| i.starts_with("issuer[0].token_validation")),
        "{text:?}"
    );
    let text = format!(
        "{BASE}[[issuer]]\nurl = \"https://as.example\"\naudiences = [\"api\"]\ntoken_validation = \"introspection\"\n\
         [issuer.introspection]\nclient_id = \"sg\"\nclient_secret_env = \"SCOPEGATE_TEST_UNSET_VARIABLE\"\n"
    );
    let Err(ConfigError::Invalid(issues)) = Config::from_toml(&text, "t") else {
        panic!()
    };
    assert_eq!(issues[0].path, "issuer[0].introspection.client_secret_env");
}

#[test]
fn budgets_are_validated() {
    let text = format!(
        "{BASE}[[issuer]]\nurl = \"https://as.example\"\naudiences = [\"api\"]\ntoken_validation = \"auto\"\n\
         unknown_kid_recheck_interval = \"10ms\"\n\
         [issuer.introspection]\nclient_id = \"sg\"\nclient_secret_env = \"PATH\"\nmax_concurrent = 8\n\
         new_token_max_concurrent = 9\nclient_new_token_burst = 0\n"
    );
    let Err(ConfigError::Invalid(issues)) = Config::from_toml(&text, "t") else {
        panic!()
    };
    let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "issuer[0].unknown_kid_recheck_interval",
            "issuer[0].introspection.new_token_max_concurrent",
            "issuer[0].introspection.client_new_token_burst",
        ]
    );
    let text = format!(
        "{BASE}[[issuer]]\nurl = \"https://as.example\"\naudiences = [\"api\"]\ntoken_validation = \"auto\"\n\
         [issuer.introspection]\nclient_id = \"sg\"\nclient_secret_env = \"PATH\"\nmax_concurrent = 7\n"
    );
    let config = Config::from_toml(&text, "t").unwrap();
    let issuer = &config.tokens.issuers[0];
    assert_eq!(issuer.unknown_kid_recheck_interval, std::time::Duration::from_secs(1));
    let introspection = issuer.introspection.as_ref().unwrap();
    assert_eq!(
        introspection.new_token_max_concurrent, 4,
        "half of max_concurrent by default"
    );
    assert_eq!(
        (
            introspection.client_new_tokens_per_second,
            introspection.client_new_token_burst
        ),
        (10, 20)
    );
}

fn issuer_with(keys: &str) -> String {
    format!("{BASE}[[issuer]]\nurl = \"https://as.example\"\naudiences = [\"api\"]\n{keys}")
}

fn problem_paths(keys: &str) -> Vec<String> {
    let Err(ConfigError::Invalid(issues)) = Config::from_toml(&issuer_with(keys), "t") else {
        panic!("{keys} should be refused")
    };
    issues.into_iter().map(|i| i.path).collect()
}

#[test]
fn typ_settings_compile_to_one_list() {
    let accepted = |keys: &str| {
        Config::from_toml(&issuer_with(keys), "t").unwrap().tokens.issuers[0]
            .accepted_typ
            .clone()
    };
    assert_eq!(accepted(""), ["at+jwt"], "RFC 9068 by default");
    assert_eq!(accepted("require_typ = true\n"), ["at+jwt"]);
    assert!(accepted("require_typ = false\n").is_empty(), "false accepts any typ");
    assert_eq!(accepted("accepted_typ = [\"at+jwt\", \"JWT\"]\n"), ["at+jwt", "JWT"]);
}

#[test]
fn typ_mistakes_are_reported() {
    let both = problem_paths("require_typ = true\naccepted_typ = [\"JWT\"]\n");
    assert_eq!(both, ["issuer[0].accepted_typ"]);
    assert_eq!(problem_paths("accepted_typ = []\n"), ["issuer[0].accepted_typ"]);
    assert_eq!(
        problem_paths("accepted_typ = [\"at+jwt\", \"at jwt\", \"application/AT+JWT\", \"\"]\n"),
        [
            "issuer[0].accepted_typ[1]",
            "issuer[0].accepted_typ[2]",
            "issuer[0].accepted_typ[3]"
        ],
        "not a media type, a duplicate as media types, empty"
    );
}

#[test]
fn typ_caution_names_the_id_token_risk() {
    let caution = |keys: &str| Config::from_toml(&issuer_with(keys), "t").unwrap().tokens.issuers[0].typ_caution();
    assert_eq!(caution(""), None);
    assert_eq!(caution("accepted_typ = [\"application/at+jwt\"]\n"), None);
    let jwt = caution("accepted_typ = [\"at+jwt\", \"JWT\"]\n").unwrap();
    assert!(
        jwt.contains("typ at+jwt, JWT") && jwt.contains("never a client id"),
        "{jwt}"
    );
    assert!(caution("require_typ = false\n").unwrap().contains("any typ"));
}

#[test]
fn scope_claims_default_and_are_validated() {
    let config = Config::from_toml(&issuer_with(""), "t").unwrap();
    assert_eq!(config.tokens.issuers[0].scope_claims, ["scope", "scp"]);
    let config = Config::from_toml(&issuer_with("scope_claims = [\"scp\", \"roles\"]\n"), "t").unwrap();
    assert_eq!(config.tokens.issuers[0].scope_claims, ["scp", "roles"]);
    assert_eq!(problem_paths("scope_claims = []\n"), ["issuer[0].scope_claims"]);
    assert_eq!(
        problem_paths("scope_claims = [\"roles\", \"aud\", \"\", \"roles\"]\n"),
        [
            "issuer[0].scope_claims[1]",
            "issuer[0].scope_claims[2]",
            "issuer[0].scope_claims[3]"
        ]
    );
}
