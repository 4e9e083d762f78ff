//! Secrets hygiene (issue 5 item 4, SECURITY INV-4): the captured debug-level logs of a full
//! login, proxied requests (with the access token and ID token sent upstream), a failed
//! callback, a userinfo call and a sign-out hold none of the values that would let someone
//! act as the user or the proxy. Complements tests/it/logs.rs (the real binary's JSON logs).

use http::StatusCode;

use crate::security_support::*;
use crate::support::*;

#[tokio::test]
async fn secrets_never_reach_the_logs_of_a_full_login_logout_run() {
    let sec = Sec::start_config(|idp, up| {
        reference_config(idp, up, "")(0).replace(
            "[headers.claims]",
            "[headers]\naccess_token = \"X-Access-Token\"\nauthorization_bearer_id_token = true\n[headers.claims]",
        )
    })
    .await;
    let mut secrets: Vec<String> = vec![CLIENT_SECRET.into(), COOKIE_SECRET.into()];
    let b = sec.browser();
    let r = sec
        .get(&b, "https://app.example.com/private?token=querysecret-1234")
        .await;
    let authorize = r.location().unwrap();
    for (k, v) in query(&authorize) {
        if ["state", "nonce", "code_challenge"].contains(&k.as_str()) {
            secrets.push(v);
        }
    }
    for n in b.cookie_names() {
        secrets.push(b.cookie(&n).unwrap());
    }
    let r = b.get(&authorize).await;
    let callback = r.location().unwrap();
    let code = query(&callback)
        .into_iter()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1;
    secrets.push(code.clone());
    let r = sec.get(&b, &callback).await;
    assert_eq!(r.status, StatusCode::FOUND);
    secrets.push(
        sec.idp
            .last_token_request()
            .unwrap()
            .field("code_verifier")
            .unwrap()
            .to_string(),
    );
    secrets.push(b.cookie("_portcullis").unwrap());
    // The tokens as the upstream receives them.
    let r = sec
        .get(&b, "https://app.example.com/private?token=querysecret-1234")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = sec.up.last();
    let access = seen.one("x-access-token").expect("access token header");
    let bearer = seen.one("authorization").expect("id token header");
    let id_token = bearer.strip_prefix("Bearer ").unwrap().to_string();
    secrets.push(access);
    secrets.extend(id_token.split('.').map(str::to_owned));
    secrets.push(id_token);
    // A replayed (now invalid) code, a forged callback, userinfo and sign-out.
    sec.get(&b, &callback).await;
    sec.get(
        &b,
        "https://app.example.com/oauth2/callback?code=guessme-code-77&state=guessme-state-77",
    )
    .await;
    secrets.push("guessme-code-77".into());
    assert_eq!(
        sec.get(&b, "https://app.example.com/oauth2/userinfo")
            .await
            .status,
        StatusCode::OK
    );
    let r = sec.get(&b, "https://app.example.com/oauth2/sign_out").await;
    let end = r.location().unwrap();
    let hint = query(&end)
        .into_iter()
        .find(|(k, _)| k == "id_token_hint")
        .unwrap()
        .1;
    secrets.push(hint);
    secrets.push("querysecret-1234".into());
    let text = sec.logs.text();
    assert!(
        text.lines().count() > 10,
        "the capture saw the run:\n{text}"
    );
    assert!(text.contains("DEBUG") || text.contains("INFO"));
    for s in &secrets {
        assert!(s.len() >= 8, "fixture value too short to grep: {s:?}");
        for line in text.lines() {
            assert!(
                !line.contains(s.as_str()),
                "secret {:.10}… in log line: {line}",
                s
            );
        }
        sec.secret(s.clone());
    }
    sec.finish().await;
}
