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
