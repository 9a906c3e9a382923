use super::*;

#[test]
fn example_config_compiles() {
    let text = include_str!("../../config.example.toml");
    let config = Config::from_toml(text, "config.example.toml").expect("config.example.toml must compile");
    assert!(config.routes.len() >= 3);
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let text = r#"
        [listener]
        address = "not-an-address"
        header_read_timeout = "10"
        [upstream]
        url = "http://127.0.0.1:3000"
        [[route]]
        name = "x"
        path = "/a"
        scopes = ["read data"]
    "#;
    let Err(ConfigError::Invalid(issues)) = Config::from_toml(text, "t.toml") else {
        panic!("expected validation errors");
    };
    let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
    assert!(paths.contains(&"listener.address"), "{issues:?}");
    assert!(paths.contains(&"listener.header_read_timeout"), "{issues:?}");
    assert!(paths.contains(&"route[0].scopes[0]"), "{issues:?}");
}

#[test]
fn unknown_keys_are_rejected() {
    let text = "[listener]\naddress = \"127.0.0.1:0\"\nadress = 1\n[upstream]\nurl = \"http://127.0.0.1:1\"\n";
    let err = Config::from_toml(text, "t.toml").expect_err("typo must be rejected");
    assert!(err.to_string().contains("adress"), "{err}");
}
