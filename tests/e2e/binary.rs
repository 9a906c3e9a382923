//! The `scopegate` binary as an operator meets it: `--config` offered only by the commands
//! that read one, plain logs on a pipe with latencies to the microsecond, and a listener that
//! cannot be bound named in a clear error instead of a panic.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::common::Upstream;

fn scopegate() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_scopegate"));
    command.env_remove("SCOPEGATE_CONFIG").env_remove("NO_COLOR");
    command
}

fn help(args: &[&str]) -> String {
    let out = scopegate().args(args).arg("--help").output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A config file in its own temporary directory, removed on drop.
struct ConfigFile {
    dir: PathBuf,
    path: PathBuf,
}

impl ConfigFile {
    fn new(name: &str, text: &str) -> ConfigFile {
        let dir = std::env::temp_dir().join(format!("scopegate-binary-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.toml");
        std::fs::write(&path, text).unwrap();
        ConfigFile { dir, path }
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Only public routes: no authorization server is needed.
fn public_config(listener: &str, admin: &str, upstream: &str) -> String {
    format!(
        "[listener]\naddress = \"{listener}\"\n[admin]\naddress = \"{admin}\"\n[upstream]\nurl = \"{upstream}\"\n\
         [reload]\nwatch = false\n[[route]]\nname = \"open\"\npath = \"/open/**\"\npublic = true\n"
    )
}

#[test]
fn config_is_offered_by_the_commands_that_read_one() {
    assert!(help(&[]).contains("--config <FILE>"), "the default command is run");
    for command in ["run", "check", "explain"] {
        assert!(help(&[command]).contains("--config <FILE>"), "{command}");
    }
    #[cfg(feature = "dev")]
    for command in ["demo", "dev-issuer"] {
        let text = help(&[command]);
        assert!(!text.contains("--config"), "{command} reads no config:\n{text}");
        // Given before the command anyway, it is refused rather than ignored.
        let out = scopegate()
            .args(["--config", "scopegate.toml", command, "--listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{command}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("takes no config file"));
    }
}

#[test]
fn every_documented_way_of_naming_the_config_still_works() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    let runs: [(&[&str], Option<&str>); 4] = [
        (&["check", "--config", example], None),
        (&["--config", example, "check"], None),
        (&["check", "-c", example], None),
        (&["check"], Some(example)),
    ];
    for (args, env) in runs {
        let mut command = scopegate();
        command.args(args);
        if let Some(path) = env {
            command.env("SCOPEGATE_CONFIG", path);
        }
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("config.example.toml: ok"),
            "{args:?}"
        );
    }
    let out = scopegate()
        .args(["explain", "GET", "/projects/7", "--config", example])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A running `scopegate run` whose stderr is a pipe; killed on drop.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(args: &[&str], config: &ConfigFile) -> Running {
        let mut child = scopegate()
            .arg("run")
            .arg("--config")
            .arg(&config.path)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first stderr line containing `needle` (every line is kept in `seen`); the wait is
    /// bounded so that a broken binary fails the test instead of hanging it.
    fn line_with(&mut self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?}; stderr so far:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// The data listener's address, from the start-up line.
    fn address(&mut self) -> String {
        let line = self.line_with("scopegate started");
        if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) {
            return event["listen"].as_str().unwrap().to_string();
        }
        let start = line.find("listen=").unwrap() + "listen=".len();
        line[start..].split_whitespace().next().unwrap().to_string()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The digits after the decimal point of a number as printed.
fn decimals(number: &str) -> usize {
    number.split_once('.').map_or(0, |(_, fraction)| fraction.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_on_a_pipe_are_plain_and_latencies_are_rounded_to_the_microsecond() {
    let upstream = Upstream::start().await;
    let config = ConfigFile::new("logs", &public_config("127.0.0.1:0", "127.0.0.1:0", &upstream.url()));
    for format in ["text", "json"] {
        let mut proxy = Running::start(&["--log-format", format], &config);
        let address = proxy.address();
        for _ in 0..5 {
            let r = crate::common::client()
                .get(format!("http://{address}/open/x"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        let mut latencies = Vec::new();
        for _ in 0..5 {
            let line = proxy.line_with("scopegate::access");
            let latency = if format == "json" {
                let event: serde_json::Value = serde_json::from_str(&line).unwrap();
                assert!(event["latency_ms"].is_number(), "{line}");
                event["latency_ms"].to_string()
            } else {
                let start = line.find("latency_ms=").unwrap() + "latency_ms=".len();
                line[start..].split_whitespace().next().unwrap().to_string()
            };
            assert!(latency.parse::<f64>().unwrap() >= 0.0, "{line}");
            assert!(decimals(&latency) <= 3, "latency_ms {latency} in {line}");
            latencies.push(latency);
        }
        let all = proxy.seen.join("\n");
        assert!(
            !all.contains('\u{1b}'),
            "ANSI escape codes on a pipe ({format}):\n{all:?}"
        );
        assert_eq!(latencies.len(), 5);
    }
    assert_eq!(upstream.requests(), 10);
}

#[test]
fn check_and_help_on_a_pipe_are_plain() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    for args in [
        vec!["check", "--config", example],
        vec!["--help"],
        vec!["check", "--help"],
    ] {
        let out = scopegate().args(&args).output().unwrap();
        let all = [out.stdout, out.stderr].concat();
        assert!(!all.contains(&0x1b), "{args:?}: {}", String::from_utf8_lossy(&all));
    }
}

fn run_to_exit(config: &ConfigFile) -> Output {
    let mut child = scopegate()
        .arg("run")
        .arg("--config")
        .arg(&config.path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A binary that binds anyway would serve forever: bound the wait, then stop it.
    for _ in 0..600 {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    panic!(
        "still running with an occupied port: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_port_in_use_is_named_with_its_listener_and_exits_non_zero() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_address = taken.local_addr().unwrap().to_string();
    for (listener, admin, expected) in [
        (
            taken_address.as_str(),
            "127.0.0.1:0",
            format!("cannot bind the data listener to {taken_address} (listener.address)"),
        ),
        (
            "127.0.0.1:0",
            taken_address.as_str(),
            format!("cannot bind the admin listener to {taken_address} (admin.address)"),
        ),
    ] {
        let config = ConfigFile::new("bind", &public_config(listener, admin, "http://127.0.0.1:1"));
        let out = run_to_exit(&config);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(&expected), "{expected}\n{stderr}");
        assert!(stderr.contains("in use"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    drop(taken);
}

/// `scopegate check | head -0`: the reader has closed the pipe before the command writes. The
/// command ends as Unix tools do (status 141, nothing on stderr), not with a panic about a
/// broken pipe (std's `println!` panics there).
#[test]
fn a_reader_that_goes_away_ends_check_and_explain_quietly() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    for args in [
        vec!["check", "--config", example],
        vec!["explain", "--config", example, "GET", "/orgs/acme/projects/1"],
    ] {
        let mut child = scopegate()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Close the only read end at once: the child is still starting (reading its config),
        // so its first write meets a closed pipe.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(141), "{args:?}: {:?} {stderr}", out.status);
    }
}
