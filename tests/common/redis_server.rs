//! A real Redis for the fleet tests: Debian's `redis-server`, started on 127.0.0.1 with a
//! port picked by binding 127.0.0.1:0 and releasing it, no persistence (`--save ''
//! --appendonly no`), its files in a temporary directory; stopped by PID on drop. With
//! [`RedisServer::start_tls`] it also serves TLS (a CA and a `localhost` certificate made
//! with the `openssl` command) and requires a password.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    /// With TLS: its port, the CA file and the password.
    pub tls: Option<(u16, PathBuf, String)>,
}

fn free_port() -> u16 {
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

/// `openssl req`: a P-256 key `<name>.key` and `out`, a self-signed certificate with
/// `-x509`, else a certificate request.
fn new_key(dir: &std::path::Path, kind: &[&str], name: &str, out: &str, subject: &str) {
    let key = format!("{name}.key");
    let mut args = vec!["req"];
    args.extend(kind);
    args.extend(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]);
    args.extend(["-keyout", &key, "-out", out, "-subj", subject]);
    openssl(dir, &args);
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("the TLS fleet test needs the openssl command: {e}"));
    assert!(status.success(), "openssl {args:?} failed");
}

fn binary() -> PathBuf {
    ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join("redis-server"))
                    .find(|path| path.exists())
            })
        })
        .unwrap_or_else(|| {
            panic!("redis-server is not installed: the fleet tests need it (apt-get install -y redis-server)")
        })
}

impl RedisServer {
    /// Starts a Redis on a free loopback port and waits until it answers PING.
    pub fn start() -> RedisServer {
        let server = RedisServer::prepare();
        server.launched()
    }

    fn prepare() -> RedisServer {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("scopegate-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        RedisServer {
            child: None,
            port,
            dir,
            tls: None,
        }
    }

    fn launched(mut self) -> RedisServer {
        self.run();
        self
    }

    /// A Redis that also listens with TLS (certificate for `localhost` and 127.0.0.1, from a
    /// CA of its own) and requires `password`.
    pub fn start_tls(password: &str) -> RedisServer {
        let mut server = RedisServer::prepare();
        let dir = server.dir.clone();
        new_key(&dir, &["-x509", "-days", "1"], "ca", "ca.pem", "/CN=scopegate test CA");
        new_key(&dir, &[], "server", "server.csr", "/CN=localhost");
        std::fs::write(dir.join("server.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "1",
                "-extfile",
                "server.ext",
            ],
        );
        server.tls = Some((free_port(), dir.join("ca.pem"), password.to_string()));
        server.launched()
    }

    fn run(&mut self) {
        let mut command = Command::new(binary());
        command
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"]);
        if let Some((tls_port, _, password)) = &self.tls {
            command
                .args(["--tls-port", &tls_port.to_string(), "--requirepass", password])
                .args(["--tls-cert-file", "server.pem", "--tls-key-file", "server.key"])
                .args(["--tls-ca-cert-file", "ca.pem", "--tls-auth-clients", "no"]);
        }
        let child = command
            .arg("--dir")
            .arg(&self.dir)
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers_ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        use std::io::{Read, Write};
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut stream) = std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        // With a password, PING is answered -NOAUTH: the server is up all the same.
        let mut answer = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut answer).is_ok()
            && (&answer == b"+PONG\r\n" || answer.starts_with(b"-NOAUTH"))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stops the server (its data is lost: it keeps none on disk).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again, empty, on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
