//! Logs through the real binary: JSON lines with `PORTCULLIS_LOG_FORMAT=json`, one access-log
//! line per request, and not one secret in any line (SECURITY INV-4) even at debug level.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use http::StatusCode;

use crate::support::*;

#[tokio::test]
async fn json_logs_carry_access_lines_and_no_secret() {
    let idp = idp().await;
    idp.set_auto_login(Some(alice()));
    let up = Upstream::start().await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = std::env::temp_dir().join(format!("portcullis-logs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("p.toml");
    let text = reference_config(&idp, &up, "")(port)
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        )
        .replace(
            &format!("client_secret = \"{CLIENT_SECRET}\""),
            "client_secret_file = \"client_secret\"",
        );
    std::fs::write(&cfg, text).unwrap();
    std::fs::write(dir.join("client_secret"), format!("{CLIENT_SECRET}\n")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["--config"])
        .arg(&cfg)
        .env("RUST_LOG", "debug")
        .env("PORTCULLIS_LOG_FORMAT", "json")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let b = Browser::new(addr);
    let mut ready = false;
    for _ in 0..100 {
        if let Ok(r) = b.try_get(&format!("http://127.0.0.1:{port}/readyz")).await
            && r.status == StatusCode::OK
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the binary never became ready");

    // A full login, a proxied request, a bad callback and a sign-out, collecting every secret.
    let mut secrets: Vec<String> = vec![CLIENT_SECRET.into(), COOKIE_SECRET.into()];
    let r = b
        .get("https://app.example.com/private?token=querysecret")
        .await;
    let authorize = r.location().unwrap();
    let q: std::collections::HashMap<String, String> = url::Url::parse(&authorize)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    secrets.push(q["state"].clone());
    secrets.push(q["nonce"].clone());
    secrets.push(q["code_challenge"].clone());
    for name in b.cookie_names() {
        secrets.push(b.cookie(&name).unwrap());
    }
    let r = b.get(&authorize).await;
    let callback = r.location().unwrap();
    let code: String = url::Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    secrets.push(code);
    let r = b.get(&callback).await;
    assert_eq!(r.status, StatusCode::FOUND);
    secrets.push(
        idp.last_token_request()
            .unwrap()
            .field("code_verifier")
            .unwrap()
            .to_string(),
    );
    secrets.push(b.cookie("_portcullis").unwrap());
    assert_eq!(
        b.get("https://app.example.com/private").await.status,
        StatusCode::OK
    );
    b.get("https://app.example.com/oauth2/callback?code=guessme-code&state=guessme-state")
        .await;
    let r = b.get("https://app.example.com/oauth2/sign_out").await;
    let end = r.location().unwrap();
    let hint: String = url::Url::parse(&end)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "id_token_hint")
        .unwrap()
        .1
        .into_owned();
    secrets.push(hint.clone());
    secrets.extend(hint.split('.').map(str::to_owned));
    secrets.push("querysecret".into());
    secrets.push("guessme-code".into());

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    let mut access = 0;
    for line in logs.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        if v["target"] == "portcullis::access" {
            access += 1;
            for field in [
                "method",
                "host",
                "path",
                "status",
                "duration_ms",
                "user",
                "route",
            ] {
                assert!(
                    v.get(field).is_some(),
                    "access line without {field}: {line}"
                );
            }
        }
        for s in &secrets {
            assert!(
                s.len() < 8 || !line.contains(s.as_str()),
                "secret {s:.12}… in log line: {line}"
            );
        }
    }
    // Five proxy requests after readiness (the authorize step goes to the IdP), plus /readyz.
    assert!(access >= 6, "{access} access lines:\n{logs}");
    assert!(
        logs.contains("\"event\":\"login_failed\""),
        "the bad callback is logged with its reason"
    );
    assert!(logs.contains("\"user\":\"u-alice\""));
}
