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
}

#[test]
fn check_lists_every_mistake() {
    let dir = std::env::temp_dir().join(format!("scopegate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
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
    )
    .unwrap();
    let out = scopegate().args(["check", "--config"]).arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("3 problem(s)"), "{stderr}");
    assert!(stderr.contains("listener.idle_timeout"), "{stderr}");
    assert!(stderr.contains("upstream.url"), "{stderr}");
    assert!(stderr.contains("route[0].scopes[0]"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
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
