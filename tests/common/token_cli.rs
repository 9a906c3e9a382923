//! Running `scopegate token` as a user would, headless: the binary in a child process with
//! its own token file, and a test that plays the browser — it reads the authorization URL
//! the command prints, follows the redirects keeping cookies, and lets the last one land on
//! the command's loopback listener.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

/// How long a command or a step of it may take before the test fails.
const LIMIT: Duration = Duration::from_secs(60);

/// A private directory for one test's token file, removed when dropped.
pub struct TokenHome {
    pub dir: PathBuf,
}

impl TokenHome {
    pub fn new(name: &str) -> TokenHome {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "scopegate-token-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TokenHome { dir }
    }

    /// The token file, in a directory the command must create itself.
    pub fn store(&self) -> PathBuf {
        self.dir.join("config").join("scopegate").join("tokens.json")
    }

    pub fn stored(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.store()).unwrap()).unwrap()
    }

    /// Rewrites the token file (e.g. to make a stored token look expired).
    pub fn edit(&self, change: impl FnOnce(&mut serde_json::Value)) {
        let mut doc = self.stored();
        change(&mut doc);
        std::fs::write(self.store(), serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    }

    /// A `scopegate token …` command using this token file.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_scopegate"));
        command
            .arg("token")
            .args(args)
            .env("SCOPEGATE_TOKEN_STORE", self.store())
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("BROWSER")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    pub fn spawn(&self, args: &[&str]) -> Running {
        Running::spawn(self.command(args))
    }

    /// Runs a command to its end (without blocking the test's runtime, which serves the
    /// authorization server and the proxy).
    pub async fn run(&self, args: &[&str]) -> Finished {
        self.spawn(args).finish().await
    }
}

impl Drop for TokenHome {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Unix permission bits of `path`.
#[cfg(unix)]
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A running command: its stderr lines as they come, its stdout at the end.
pub struct Running {
    lines: mpsc::UnboundedReceiver<String>,
    stderr: Arc<Mutex<String>>,
    done: oneshot::Receiver<(bool, String)>,
}

/// How a command ended.
#[derive(Debug)]
pub struct Finished {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Running {
    pub fn spawn(mut command: Command) -> Running {
        let mut child: Child = command.spawn().unwrap();
        let stderr_pipe = child.stderr.take().unwrap();
        let mut stdout_pipe = child.stdout.take().unwrap();
        let (send_line, lines) = mpsc::unbounded_channel();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = send_line.send(line);
            }
        });
        let (finish, done) = oneshot::channel();
        std::thread::spawn(move || {
            let mut stdout = String::new();
            let _ = stdout_pipe.read_to_string(&mut stdout);
            let status = child.wait().unwrap();
            let _ = reader.join();
            let _ = finish.send((status.success(), stdout));
        });
        Running { lines, stderr, done }
    }

    /// The next line on stderr that is a URL (the authorization URL the command prints).
    pub async fn authorization_url(&mut self) -> String {
        self.next_line(|line| (line.starts_with("http://") || line.starts_with("https://")).then(|| line.to_string()))
            .await
    }

    /// The device grant's verification URL with the user code in it (RFC 8628 §3.3.1).
    pub async fn verification_url(&mut self) -> String {
        self.next_line(|line| line.split_once("or open ").map(|(_, url)| url.trim().to_string()))
            .await
    }

    async fn next_line(&mut self, pick: impl Fn(&str) -> Option<String>) -> String {
        let found = tokio::time::timeout(LIMIT, async {
            while let Some(line) = self.lines.recv().await {
                if let Some(found) = pick(&line) {
                    return Some(found);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(found)) => found,
            _ => panic!(
                "the command did not print what the test waits for; stderr:\n{}",
                self.stderr.lock().unwrap()
            ),
        }
    }

    pub async fn finish(self) -> Finished {
        let (success, stdout) = tokio::time::timeout(LIMIT, self.done)
            .await
            .expect("the command finishes")
            .unwrap();
        let stderr = self.stderr.lock().unwrap().clone();
        Finished {
            success,
            stdout,
            stderr,
        }
    }
}

/// Plays the browser: follows redirects from `url` keeping cookies until one points at the
/// loopback callback, then requests that (the command's listener answers). Returns the
/// callback URL it delivered.
pub async fn browse(url: &str) -> String {
    let callback = follow_redirects(url, |next| {
        next.path() == "/callback" && next.host_str() == Some("127.0.0.1")
    })
    .await;
    let response = super::client().get(callback.clone()).send().await.unwrap();
    assert_eq!(response.status(), 200, "the loopback listener answers the callback");
    callback.to_string()
}

/// Follows redirects from `url` as a browser does, keeping cookies (an authorization
/// server's interaction needs them), until a location satisfies `stop`; returns it unvisited.
pub async fn follow_redirects(url: &str, stop: impl Fn(&reqwest::Url) -> bool) -> reqwest::Url {
    let client = super::client();
    let mut next = reqwest::Url::parse(url).unwrap();
    let mut cookies: BTreeMap<String, String> = BTreeMap::new();
    for _ in 0..20 {
        if stop(&next) {
            return next;
        }
        let mut request = client.get(next.clone());
        if !cookies.is_empty() {
            let jar: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            request = request.header("cookie", jar.join("; "));
        }
        let response = request.send().await.unwrap();
        for set in response.headers().get_all("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                if value.is_empty() {
                    cookies.remove(name.trim());
                } else {
                    cookies.insert(name.trim().to_string(), value.to_string());
                }
            }
        }
        let status = response.status();
        let Some(location) = response
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string())
        else {
            panic!(
                "the authorization flow stopped at {next}: {status} {}",
                response.text().await.unwrap()
            );
        };
        next = next.join(&location).unwrap();
    }
    panic!("more than 20 redirects from {url}");
}

/// The query parameters of a URL.
pub fn query(url: &str) -> BTreeMap<String, String> {
    reqwest::Url::parse(url).unwrap().query_pairs().into_owned().collect()
}

/// The claims of a compact JWT (not verified: the proxy does that).
pub fn claims(token: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap_or_else(|| panic!("not a JWT: {token}"));
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}
