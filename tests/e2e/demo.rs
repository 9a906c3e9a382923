//! `scopegate demo` as a newcomer runs it: every printed example request gives the status
//! the banner promises.
// The development authorization server these tests run against is behind the `dev` feature.
#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used)]

use scopegate::dev::demo::{Demo, DemoArgs};

#[tokio::test]
async fn demo_examples_show_200_401_403() {
    let demo = Demo::start(&DemoArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        check: true,
    })
    .await
    .unwrap();
    let text = demo.instructions();
    for status in ["-> 200", "-> 401", "-> 403"] {
        assert!(text.contains(status), "{text}");
    }
    assert!(
        text.contains(&format!("curl -i http://{}/api/public", demo.proxy.addr)),
        "{text}"
    );
    let (lines, ok) = demo.self_check().await;
    assert!(ok, "{lines:#?}");
    assert_eq!(lines.len(), demo.examples.len());
    demo.shutdown().await;
}

#[test]
fn demo_binary_check_mode_passes() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scopegate"))
        .args(["demo", "--listen", "127.0.0.1:0", "--check", "--log-level", "warn"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("demo check: 14 passed, 0 failed"), "{stdout}");
}
