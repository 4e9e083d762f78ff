//! `portcullis explain` through the real binary: route, access and policy verdicts with their
//! reasons; exit 0 allow, 3 deny, 1 unusable input, 2 usage.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:4180"
public_url = "https://app.example.com"
[oidc]
issuer = "https://idp.example.com"
client_id = "portcullis"
client_secret = "fake-explain-secret"
[session]
cookie_secret = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
[[route]]
host = "app.example.com"
path = "/public/"
upstream = "http://127.0.0.1:9001"
auth = "public"
[[route]]
host = "app.example.com"
path = "/admin"
upstream = "http://127.0.0.1:9001"
allow_groups = ["admins"]
allow_email_domains = ["example.com"]
[[route]]
host = "app.example.com"
path = "/"
upstream = "http://127.0.0.1:9001"
"#;

fn dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("portcullis-it-explain-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let p = dir().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn explain(args: &[&str]) -> (Option<i32>, String, String) {
    let cfg = write("explain.toml", CONFIG);
    let out: Output = Command::new(BIN)
        .arg("explain")
        .arg("--config")
        .arg(&cfg)
        .args(args)
        .env_remove("PORTCULLIS_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn verdicts_and_reasons() {
    let eng = write(
        "eng.json",
        r#"{"sub": "u-alice", "email": "alice@evil-example.com", "email_verified": true, "groups": ["eng"]}"#,
    );
    let eng = eng.to_str().unwrap();
    let cases: Vec<(Vec<&str>, i32, Vec<&str>)> = vec![
        (
            vec![
                "--url",
                "https://app.example.com/admin/users",
                "--claims",
                r#"{"sub":"u-bob","groups":["admins"]}"#,
            ],
            0,
            vec![
                "route1",
                "auth required",
                "allow_groups matched \"admins\"",
                "ALLOW",
            ],
        ),
        (
            vec![
                "--url",
                "https://app.example.com/admin/users",
                "--claims",
                eng,
            ],
            3,
            vec![
                "allow_email_domains: domain evil-example.com is not in allow_email_domains [example.com]",
                "allow_groups: groups [eng] ∩ allow_groups [admins] is empty",
                "DENY: 403",
            ],
        ),
        (
            vec![
                "--url",
                "https://app.example.com/admin",
                "--claims",
                r#"{"sub":"x","email":"bob@example.com","email_verified":false}"#,
            ],
            3,
            vec!["email_verified is not true (it is false)", "DENY"],
        ),
        (
            vec![
                "--url",
                "https://app.example.com/admin",
                "--claims",
                r#"{"sub":"x","email":"a@evil.com@example.com","email_verified":true}"#,
            ],
            3,
            vec!["email has no single @"],
        ),
        (
            vec![
                "--url",
                "https://app.example.com/public/../admin/x",
                "--claims",
                r#"{"sub":"x","email":"bob@EXAMPLE.com","email_verified":true}"#,
            ],
            0,
            vec![
                "/admin/x (normalised from /public/../admin/x)",
                "route1",
                "allow_email_domains matched \"example.com\"",
            ],
        ),
        (
            vec!["--url", "https://app.example.com/public/page"],
            0,
            vec!["route0", "public"],
        ),
        (
            vec!["--url", "/anything"],
            3,
            vec!["route2", "no claims given"],
        ),
        (
            vec![
                "--url",
                "https://app.example.com/a/%2e%2e/%2e%2e/etc/passwd",
            ],
            3,
            vec!["400", "climbs above the root"],
        ),
        (
            vec!["--url", "https://app.example.com/files%2f..%2fadmin"],
            3,
            vec!["400", "encoded slash"],
        ),
        (vec!["--url", "https://other.example.com/"], 3, vec!["404"]),
        (
            vec!["--url", "https://app.example.com/oauth2/sign_out"],
            0,
            vec!["portcullis itself"],
        ),
        (
            vec![
                "--url",
                "https://app.example.com/x",
                "--method",
                "DELETE",
                "--claims",
                r#"{"sub":"x"}"#,
            ],
            0,
            vec!["method   DELETE", "any authenticated user"],
        ),
    ];
    for (args, code, needles) in cases {
        let (got, out, err) = explain(&args);
        assert_eq!(got, Some(code), "{args:?}\n{out}{err}");
        for n in needles {
            assert!(out.contains(n), "{args:?}: {n:?} not in\n{out}");
        }
    }
}

#[test]
fn unusable_input_exits_1_and_usage_errors_2() {
    for (args, needle) in [
        (vec!["--url", "ftp://app.example.com/"], "--url"),
        (
            vec!["--url", "https://app.example.com/", "--claims", "[1, 2]"],
            "--claims",
        ),
        (
            vec![
                "--url",
                "https://app.example.com/",
                "--claims",
                r#"{"sub":"a","sub":"b"}"#,
            ],
            "--claims",
        ),
        (
            vec![
                "--url",
                "https://app.example.com/",
                "--claims",
                "/nonexistent/claims.json",
            ],
            "cannot read",
        ),
        (
            vec!["--url", "https://app.example.com/", "--method", "GE T"],
            "--method",
        ),
    ] {
        let (got, out, err) = explain(&args);
        assert_eq!(got, Some(1), "{args:?}\n{out}{err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let bad = write("bad.toml", "[server]\nlisten = 1\n");
    let out = Command::new(BIN)
        .args(["explain", "--url", "/", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.listen"));
    let (got, _, _) = explain(&[]);
    assert_eq!(got, Some(2), "missing --url is a usage error");
}
