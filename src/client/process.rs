//! The programs `scopegate token` starts: curl with the token in a header (and one step-up
//! on a 403 `insufficient_scope`, as the MCP SDKs do), a command with the token in its
//! environment, and the browser.
//!
//! The token never appears on a command line (where `ps` shows it): curl reads its
//! `Authorization` header from a file only the user can read, removed afterwards.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use super::challenge::BearerChallenge;
use super::error::ClientError;
use super::flows::{self, TokenRequest};
use super::grants::Prompt;
use super::pkce::random_text;
use super::store::{private_file, scope_set};

/// A file in the temporary directory, readable by the user only, removed when dropped.
struct PrivateTemp(PathBuf);

impl PrivateTemp {
    fn new(what: &str, content: &[u8]) -> Result<PrivateTemp, ClientError> {
        let path = std::env::temp_dir().join(format!("scopegate-{what}-{}", random_text(12)));
        let written = private_file(&path).and_then(|mut file| file.write_all(content));
        let temp = PrivateTemp(path);
        written.map_err(|e| ClientError::Spawn {
            program: "curl".into(),
            reason: format!("cannot write {}: {e}", temp.0.display()),
        })?;
        Ok(temp)
    }
}

impl Drop for PrivateTemp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs curl on the request's URL with its token; on a 403 `insufficient_scope` gets a
/// token with the challenged scopes added and runs curl once more. Exits as curl did.
pub async fn curl(
    http: &reqwest::Client,
    mut request: TokenRequest,
    curl_args: &[String],
    step_up: bool,
    prompt: &dyn Fn(&Prompt<'_>),
) -> Result<ExitCode, ClientError> {
    let target = flows::resolve(http, &request).await?;
    let mut obtained = flows::obtain(http, &request, target.clone(), prompt).await?;
    let mut stepped = false;
    loop {
        let (code, answer) = run_curl(&request.url, curl_args, &obtained.token.access_token)?;
        let challenge = answer.filter(|a| a.status == 403).and_then(|a| a.challenge);
        let wider = challenge
            .filter(|c| c.error() == Some("insufficient_scope"))
            .map(|c| {
                let mut union = obtained.token.scopes.clone();
                union.extend(c.scopes());
                scope_set(&union)
            })
            .filter(|union| *union != obtained.token.scopes);
        match wider {
            Some(scopes) if step_up && !stepped => {
                eprintln!(
                    "scopegate: 403 insufficient_scope; getting a token with scope {:?} and repeating the request",
                    scopes.join(" ")
                );
                request.scopes = scopes;
                request.fresh = true;
                obtained = flows::obtain(http, &request, target.clone(), prompt).await?;
                stepped = true;
            }
            _ => return Ok(code),
        }
    }
}

/// The final status and challenge curl saw.
struct Answer {
    status: u16,
    challenge: Option<BearerChallenge>,
}

fn run_curl(url: &str, args: &[String], token: &str) -> Result<(ExitCode, Option<Answer>), ClientError> {
    let header = PrivateTemp::new("header", format!("Authorization: Bearer {token}\n").as_bytes())?;
    let dump = PrivateTemp::new("response-headers", b"")?;
    let status = Command::new("curl")
        .arg("--header")
        .arg(format!("@{}", header.0.display()))
        .arg("--dump-header")
        .arg(&dump.0)
        .args(args)
        .arg("--")
        .arg(url)
        .stdin(Stdio::inherit())
        .status()
        .map_err(|e| ClientError::Spawn {
            program: "curl".into(),
            reason: e.to_string(),
        })?;
    let answer = std::fs::read_to_string(&dump.0)
        .ok()
        .and_then(|text| last_answer(&text));
    Ok((exit_code(status), answer))
}

/// The last response in curl's header dump (after any `100 Continue` or redirect).
fn last_answer(dump: &str) -> Option<Answer> {
    let lines: Vec<&str> = dump.lines().collect();
    let start = lines.iter().rposition(|line| line.starts_with("HTTP/"))?;
    let mut lines = lines[start..].iter().copied();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let challenge = lines
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("www-authenticate"))
        .find_map(|(_, value)| BearerChallenge::parse(value.trim()));
    Some(Answer { status, challenge })
}

fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    }
}

/// Runs `command` with the token in `env_var`; exits as it did.
pub fn exec(command: &[String], env_var: &str, token: &str) -> Result<ExitCode, ClientError> {
    let Some((program, args)) = command.split_first() else {
        return Err(ClientError::Usage("exec needs a command after --".into()));
    };
    let status = Command::new(program)
        .args(args)
        .env(env_var, token)
        .status()
        .map_err(|e| ClientError::Spawn {
            program: program.clone(),
            reason: e.to_string(),
        })?;
    Ok(exit_code(status))
}

/// Whether a browser can be opened: a desktop session on Linux and the BSDs; always on
/// macOS and Windows.
pub fn browser_available() -> bool {
    if cfg!(any(target_os = "macos", windows)) {
        return true;
    }
    ["DISPLAY", "WAYLAND_DISPLAY", "BROWSER"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
}

/// Opens `url` in the user's browser; false when no opener could be started.
pub fn open_browser(url: &str) -> bool {
    let mut command = if cfg!(target_os = "macos") {
        Command::new("open")
    } else if cfg!(windows) {
        let mut c = Command::new("rundll32");
        c.arg("url.dll,FileProtocolHandler");
        c
    } else {
        match std::env::var_os("BROWSER").filter(|b| !b.is_empty()) {
            Some(browser) => Command::new(browser),
            None => Command::new("xdg-open"),
        }
    };
    command
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .is_ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_the_last_answer_of_a_header_dump() {
        let dump = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 403 Forbidden\r\nwww-authenticate: Bearer error=\"insufficient_scope\", scope=\"read write\"\r\n\r\n";
        let answer = last_answer(dump).unwrap();
        assert_eq!(answer.status, 403);
        let challenge = answer.challenge.unwrap();
        assert_eq!(challenge.error(), Some("insufficient_scope"));
        assert_eq!(challenge.scopes(), ["read", "write"]);
    }
}
