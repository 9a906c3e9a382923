//! Interop with the official MCP Python SDK (PyPI `mcp`, pinned in tests/mcp/requirements.txt):
//! its streamable-HTTP client, starting unauthenticated, against its MCPServer (formerly
//! FastMCP) behind scopegate, with the development issuer as authorization server. All on
//! 127.0.0.1 with free ports. Fails with the install command when the packages are missing,
//! unless SCOPEGATE_SKIP_PYTHON_INTEROP=1.
// The development authorization server these tests run against is behind the `dev` feature.
#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::builder::{ConfigBuilder, IssuerBuilder, RouteBuilder};
use scopegate::dev::DevIssuerConfig;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

const INSTALL: &str = "python3 -m pip install -r tests/requirements.txt";
const CHECK_PACKAGES: &str = "
from importlib.metadata import version
import mcp.client.auth, mcp.server.mcpserver, uvicorn, httpx2
pins = {}
for line in open('tests/mcp/requirements.txt'):
    line = line.split('#')[0].strip()
    if line:
        name, pinned = line.split('==')
        pins[name] = pinned
wrong = [f'{n}=={version(n)} (want {p})' for n, p in pins.items() if version(n) != p]
assert not wrong, wrong
";

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// True when the pinned packages are importable; otherwise fails the test with the install
/// command, or skips it when SCOPEGATE_SKIP_PYTHON_INTEROP=1.
fn packages_present() -> bool {
    let out = Command::new(python())
        .args(["-c", CHECK_PACKAGES])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    let problem = match out {
        Ok(out) if out.status.success() => return true,
        Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
        Err(e) => format!("cannot run {}: {e}", python()),
    };
    if std::env::var("SCOPEGATE_SKIP_PYTHON_INTEROP").as_deref() == Ok("1") {
        eprintln!("skipping MCP SDK interop (SCOPEGATE_SKIP_PYTHON_INTEROP=1): {problem}");
        return false;
    }
    panic!(
        "the MCP Python SDK interop test needs its pinned packages; install them with:\n  {INSTALL}\n(or set SCOPEGATE_SKIP_PYTHON_INTEROP=1 to skip)\n{problem}"
    );
}

/// A child process killed (by its own handle) when dropped, with its output collected by
/// reader threads so that it never blocks on a full pipe.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl Proc {
    fn spawn(args: &[&str]) -> Proc {
        let mut child = Command::new(python())
            .arg("-u")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let (etx, stderr) = mpsc::channel();
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            let _ = etx.send(text);
        });
        Proc { child, lines, stderr }
    }

    /// Waits (without blocking the runtime) for the process to exit, bounded.
    async fn finish(mut self, timeout: Duration) -> (bool, Vec<String>, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let lines: Vec<String> = self.lines.try_iter().collect();
        let stderr = self.stderr.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
        (status.is_some_and(|s| s.success()), lines, stderr)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn events(lines: &[String]) -> Vec<Value> {
    lines.iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn http_events(events: &[Value], status: u64) -> impl Iterator<Item = &Value> {
    events
        .iter()
        .filter(move |e| e["event"] == "http" && e["status"] == status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn official_python_sdk_client_and_server_through_scopegate() {
    if !packages_present() {
        return;
    }
    // The SDK's MCP server on a free port of its own choosing.
    let server = Proc::spawn(&["tests/mcp/server.py"]);
    let port: u16 = match server.lines.recv_timeout(Duration::from_secs(60)) {
        Ok(line) => line
            .strip_prefix("LISTENING ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected server output: {line}")),
        Err(_) => {
            let (_, _, stderr) = server.finish(Duration::from_secs(1)).await;
            panic!("the MCP server did not start:\n{stderr}");
        }
    };
    crate::common::eventually_some("the MCP server accepts connections", || async {
        TcpStream::connect(("127.0.0.1", port)).await.ok()
    })
    .await;

    let issuer = crate::common::dev_issuer(DevIssuerConfig::default()).await;
    let data = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let resource = format!("http://{}/mcp", data.local_addr().unwrap());
    let config = ConfigBuilder::new(&format!("http://127.0.0.1:{port}"))
        .issuer(IssuerBuilder::new(issuer.issuer(), &[&resource]))
        .route(RouteBuilder::new("mcp", "/mcp").mcp().scopes(&["mcp"]).mcp_rule(
            "tools/call",
            Some("delete_*"),
            &["write"],
        ))
        .mcp(&resource, "notes")
        .build();
    let proxy = scopegate::server::start_with_listeners(config, data, TcpListener::bind("127.0.0.1:0").await.unwrap());
    crate::common::eventually("the issuer's keys are loaded", || proxy.app.is_ready()).await;
    let metadata_url = format!("http://{}/.well-known/oauth-protected-resource/mcp", proxy.addr);

    for (mode, scenario) in [
        ("legacy", "basic"),
        ("2026-07-28", "basic"),
        ("2026-07-28", "stepup"),
        ("legacy", "stepup"),
    ] {
        let client = Proc::spawn(&["tests/mcp/client.py", &resource, mode, scenario]);
        let (ok, lines, stderr) = client.finish(Duration::from_secs(120)).await;
        let context = format!("{mode}/{scenario}:\n{}\n{stderr}", lines.join("\n"));
        assert!(ok, "client failed: {context}");
        let events = events(&lines);
        let result = events.last().unwrap();
        assert_eq!(result["event"], "result", "{context}");
        assert_eq!(result["tools"], serde_json::json!(["add", "delete_note"]), "{context}");
        assert_eq!(result["is_error"], false, "{context}");

        // It started unauthenticated: the first answer was our 401, pointing at the metadata.
        let first = events.iter().find(|e| e["event"] == "http").unwrap();
        assert_eq!(first["status"], 401, "{context}");
        let challenge = first["www_authenticate"].as_str().unwrap();
        assert!(
            challenge.contains(&format!("resource_metadata=\"{metadata_url}\"")),
            "{context}"
        );
        assert!(challenge.contains("scope=\"mcp\""), "{context}");
        assert!(
            http_events(&events, 200).any(|e| e["url"] == metadata_url),
            "metadata never fetched: {context}"
        );
        let authorizations: Vec<&Value> = events.iter().filter(|e| e["event"] == "authorize").collect();
        assert_eq!(authorizations[0]["scope"], "mcp", "{context}");
        assert_eq!(
            authorizations[0]["resource"],
            resource.as_str(),
            "RFC 8707 resource: {context}"
        );

        let version = if mode == "legacy" { "2025-11-25" } else { "2026-07-28" };
        assert_eq!(result["protocol_version"], version, "{context}");
        if mode != "legacy" {
            assert!(
                events
                    .iter()
                    .any(|e| e["event"] == "http" && e["mcp_method"] == "tools/call" && e["status"] == 200),
                "the 2026-07-28 client sends Mcp-Method: {context}"
            );
        }

        match scenario {
            "basic" => {
                assert!(events.iter().any(|e| e["event"] == "registered"), "{context}");
                assert_eq!(result["text"], "5", "{context}");
                assert_eq!(authorizations.len(), 1, "{context}");
            }
            _ => {
                let refused = http_events(&events, 403)
                    .next()
                    .unwrap_or_else(|| panic!("no 403: {context}"));
                let challenge = refused["www_authenticate"].as_str().unwrap();
                assert!(challenge.contains("error=\"insufficient_scope\""), "{context}");
                assert!(challenge.contains("scope=\"mcp write\""), "{context}");
                assert!(!challenge.contains("offline_access"), "{context}");
                assert_eq!(authorizations.len(), 2, "{context}");
                assert_eq!(authorizations[1]["scope"], "mcp write", "{context}");
                assert_eq!(result["text"], "deleted 1", "{context}");
                assert_eq!(result["final_scope"], "mcp write", "{context}");
            }
        }
    }

    proxy.shutdown().await;
    issuer.shutdown().await;
    let (_, _, _) = server.finish(Duration::ZERO).await;
}
