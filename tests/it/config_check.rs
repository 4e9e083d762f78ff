//! `portcullis check` through the real binary: every error with key and line:column, exit 1;
//! a good file gets a summary and exit 0; usage errors exit 2.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("portcullis-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_reports_every_error_with_line_and_column() {
    let p = write(
        "bad.toml",
        r#"[server]
listen = "127.0.0.1:4180"
public_url = "https://app.example.com"
request_timout = "10s"

[oidc]
issuer = "https://idp.example.com"
client_id = "portcullis"
client_secret = "${PORTCULLIS_IT_UNSET_VARIABLE}"

[session]
cookie_secret = "dG9vLXNob3J0"
same_site = "sideways"

[[route]]
path = "/"
upstream = "ftp://127.0.0.1:8080"
"#,
    );
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&p)
        .env_remove("PORTCULLIS_IT_UNSET_VARIABLE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for (key, line) in [
        ("server.request_timout", 4),
        ("oidc.client_secret", 9),
        ("session.cookie_secret", 12),
        ("session.same_site", 13),
        ("route[0].upstream", 17),
    ] {
        let hit = err
            .lines()
            .find(|l| l.contains(key))
            .unwrap_or_else(|| panic!("{key} not reported:\n{err}"));
        assert!(
            hit.contains(&format!(":{line}:")),
            "{key} should be on line {line}: {hit}"
        );
    }
    assert!(
        !err.contains("dG9vLXNob3J0"),
        "secret values are never echoed"
    );
}

#[test]
fn check_accepts_the_example_and_prints_a_summary() {
    let secret = Command::new(BIN).arg("generate-secret").output().unwrap();
    assert!(secret.status.success());
    let secret = String::from_utf8(secret.stdout).unwrap().trim().to_string();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/portcullis.toml");
    let out = Command::new(BIN)
        .args(["check", "--config", example])
        .env("PORTCULLIS_CLIENT_SECRET", "example-secret")
        .env("PORTCULLIS_COOKIE_SECRET", &secret)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ok"));
    assert!(
        !stdout.contains(&secret) && !stdout.contains("example-secret"),
        "no secret in the summary"
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = Command::new(BIN).arg("--no-such-flag").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN)
        .env_remove("PORTCULLIS_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("portcullis "));
}

#[test]
fn run_with_a_bad_config_exits_1_with_a_reason() {
    let p = write("bad2.toml", "[server]\nlisten = \"nope\"\n");
    let out = Command::new(BIN)
        .args(["--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.listen"));
}
